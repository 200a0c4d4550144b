// A TCP proxy between a test's clients and Herald, standing in for the network: `cut()` drops
// every connection at once (a network failure, not a server restart), and `block(prefix)`
// refuses requests whose path starts with `prefix` (a proxy that breaks WebSockets or SSE), and
// `buffer(prefix)` passes such a request's response head but holds its body (a corporate proxy
// or antivirus that buffers streams: the client sees `200 text/event-stream`, then nothing).
import net from "node:net";

export async function startProxy(targetBase) {
  let target = new URL(targetBase);
  const sockets = new Set();
  const blocked = new Set();
  const buffered = new Set();
  // Every request line a client sends (keep-alive connections carry several) is checked.
  const matches = (chunk, prefixes) => {
    const line = chunk.toString("latin1", 0, Math.min(chunk.length, 512));
    const match = /^[A-Z]+ (\S+) HTTP\/1\.[01]\r?\n/.exec(line);
    return match !== null && [...prefixes].some((prefix) => match[1].startsWith(prefix));
  };
  const isBlocked = (chunk) => matches(chunk, blocked);
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.on("error", () => {});
    const upstream = net.connect(Number(target.port), target.hostname);
    sockets.add(upstream);
    upstream.on("close", () => {
      sockets.delete(upstream);
      client.destroy();
    });
    upstream.on("error", () => client.destroy());
    client.on("close", () => upstream.destroy());
    // Once a buffered request went upstream, its response passes up to the end of its head.
    let holdBody = false;
    let head = Buffer.alloc(0);
    client.on("data", (chunk) => {
      if (isBlocked(chunk)) {
        client.destroy();
        upstream.destroy();
        return;
      }
      if (matches(chunk, buffered)) holdBody = true;
      upstream.write(chunk);
    });
    upstream.on("data", (chunk) => {
      if (!holdBody) {
        client.write(chunk);
        return;
      }
      if (head === null) return; // the body: held, never passed on
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end >= 0) {
        client.write(head.subarray(0, end + 4));
        head = null;
      }
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    base: `http://127.0.0.1:${server.address().port}`,
    /** Sends new connections to another server (one started again on a new port). */
    retarget(base) {
      target = new URL(base);
    },
    /** Drops every open connection. */
    cut() {
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    /** Holds the response bodies of requests to paths starting with `prefix` (until `unbuffer`). */
    buffer(prefix) {
      buffered.add(prefix);
    },
    unbuffer(prefix) {
      buffered.delete(prefix);
    },
    /** Refuses requests to paths starting with `prefix` (until `unblock`). */
    block(prefix) {
      blocked.add(prefix);
    },
    unblock(prefix) {
      blocked.delete(prefix);
    },
    async close() {
      this.cut();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
