/** Requests over plain HTTP: publish (`POST /publish`), history, and reading JSON errors. */
import { type Envelope, type Published } from "./types.js";
/** History of a channel: its current position and the messages asked for (oldest first). */
export interface History {
    channel: string;
    epoch: string;
    offset: number;
    messages: Envelope[];
}
/** Reads a response's JSON, or throws its `{"error":…}` as a HeraldError. */
export declare function readJson<T>(response: Response): Promise<T>;
/** `POST /publish`. */
export declare function httpPublish(fetchFn: typeof fetch, baseUrl: string, token: string | undefined, channel: string, data: unknown, event: string | undefined): Promise<Published>;
/** `GET /history/{channel}`. */
export declare function httpHistory(fetchFn: typeof fetch, baseUrl: string, token: string | undefined, channel: string, options: {
    limit?: number;
    since?: number;
}): Promise<History>;
