// A TCP proxy between a test's clients and Herald, standing in for the network: `cut()` drops
// every connection at once (a network failure, not a server restart), and `block(prefix)`
// refuses requests whose path starts with `prefix` (a proxy that breaks WebSockets or SSE).
import net from "node:net";

export async function startProxy(targetBase) {
  let target = new URL(targetBase);
  const sockets = new Set();
  const blocked = new Set();
  // Every request line a client sends (keep-alive connections carry several) is checked.
  const isBlocked = (chunk) => {
    const line = chunk.toString("latin1", 0, Math.min(chunk.length, 512));
    const match = /^[A-Z]+ (\S+) HTTP\/1\.[01]\r?\n/.exec(line);
    return match !== null && [...blocked].some((prefix) => match[1].startsWith(prefix));
  };
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
    client.on("data", (chunk) => {
      if (isBlocked(chunk)) {
        client.destroy();
        upstream.destroy();
        return;
      }
      upstream.write(chunk);
    });
    upstream.pipe(client);
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
