/** The types every part of the client shares, and the contract of a transport. */
/** An error from the server (`{"error":{"code","message"}}`) or from the client itself. */
export class HeraldError extends Error {
    constructor(
    /** A snake_case code: the server's, or `queue_full`, `closed`, `network`, `timeout`. */
    code, message, 
    /** The HTTP status or close code, when there is one. */
    status) {
        super(message);
        this.code = code;
        this.status = status;
        this.name = "HeraldError";
    }
}
