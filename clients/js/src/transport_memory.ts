/**
 * Which transport last worked for a server: kept for the page (every client of the same
 * server URL shares it) and, when asked, in `sessionStorage`, so that a reconnect or a reload
 * starts with a transport known to work instead of waiting out the ones a proxy breaks.
 */

import type { TransportName } from "./types.js";

/** Where a client keeps the transport that worked: `"page"` (the default), `"session"`, or `"none"`. */
export type RememberTransport = "page" | "session" | "none";

const NAMES: readonly TransportName[] = ["websocket", "sse", "polling"];
const workedOnThisPage = new Map<string, TransportName>();

/** The remembered transport of one server URL. */
export class TransportMemory {
  private readonly key: string;

  constructor(
    private readonly baseUrl: string,
    private readonly mode: RememberTransport,
  ) {
    this.key = `herald:transport:${baseUrl}`;
  }

  /** The transport that worked last, if any is remembered. */
  get(): TransportName | undefined {
    if (this.mode === "none") return undefined;
    const here = workedOnThisPage.get(this.baseUrl);
    if (here || this.mode !== "session") return here;
    const stored = sessionStore()?.getItem(this.key);
    return NAMES.find((name) => name === stored);
  }

  /** `name` worked. */
  set(name: TransportName): void {
    if (this.mode === "none") return;
    workedOnThisPage.set(this.baseUrl, name);
    if (this.mode === "session") sessionStore()?.setItem(this.key, name);
  }

  /** What was remembered no longer works: start from the top again. */
  forget(): void {
    workedOnThisPage.delete(this.baseUrl);
    if (this.mode === "session") sessionStore()?.removeItem(this.key);
  }
}

/** `sessionStorage`, where there is one and the page may use it. */
export function sessionStore(): Storage | undefined {
  return storage("sessionStorage");
}

/** `localStorage`, where there is one and the page may use it. */
export function localStore(): Storage | undefined {
  return storage("localStorage");
}

function storage(name: "sessionStorage" | "localStorage"): Storage | undefined {
  try {
    // Reading the property throws where storage is denied (sandboxed frames, some privacy modes).
    return (globalThis as Partial<Record<typeof name, Storage>>)[name];
  } catch {
    return undefined;
  }
}
