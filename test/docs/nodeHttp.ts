// Stands in for "node:http" in a snippet's process (the test maps the snippet's
// `import http from "node:http"`, or the README's free name `http`, to this module).
// Everything is node:http's own, except that `server.listen(port)` listens on a free port
// of 127.0.0.1 instead of the documented one (3000 may be taken: by `npm run demo:web`,
// or by this same test running in another checkout), and the server is announced to the
// test with the port the snippet asked for, so the test can check it and connect.
import http from "node:http";
import { announce } from "./child.js";

export const servers: http.Server[] = [];

const createServer = ((...args: Parameters<typeof http.createServer>) => {
  const server = http.createServer(...args);
  servers.push(server);
  const listen = server.listen.bind(server) as (...a: unknown[]) => http.Server;
  server.listen = ((...listenArgs: unknown[]) => {
    const requestedPort = listenArgs[0];
    if (typeof requestedPort === "number" || typeof requestedPort === "string") {
      // listen(port[, host][, backlog][, callback]): keep the callback, if any.
      const callback = listenArgs.find((a) => typeof a === "function");
      listenArgs = callback ? [0, "127.0.0.1", callback] : [0, "127.0.0.1"];
    }
    server.once("listening", () => {
      const address = server.address();
      announce({ listening: typeof address === "object" && address ? address.port : address, requestedPort });
    });
    return listen(...listenArgs);
  }) as typeof server.listen;
  return server;
}) as typeof http.createServer;

export default { ...http, createServer } as typeof http;

/** Ends every server the snippet created, open event streams included. */
export async function closeServers(): Promise<void> {
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  })));
}
