// Sockets for the query pool that notice a silent TCP path. A NAT or load balancer that
// forgets a connection drops its packets without closing it: a query sent on it then
// waits for the kernel's keepalive to give up, about 11 minutes with Linux's defaults,
// and so did every call behind it (the black-box attack held getStatus and close() for
// 90 s and more). Here a socket that has sent something and heard nothing back for
// `quietMs` is destroyed with ETIMEDOUT: the query fails as a transient error and is
// retried on a new connection. (The listener has its heartbeat for the same job.) Not
// used on TLS connections (see connect.ts): those rely on the call's own deadline.
import net from "node:net";

/** The part of postgres.js's options a socket factory receives. */
interface SocketOptions {
  host: string[];
  port: number[];
  path?: string;
}

/** A postgres.js `socket` option: TCP (or a Unix socket), trying the URL's hosts in turn. */
export function answerWatchedSockets(quietMs: number): (options: SocketOptions) => net.Socket {
  let next = 0;
  return (options) => {
    const i = next++ % Math.max(1, options.host.length);
    const socket = options.path
      ? net.connect(options.path)
      : net.connect(options.port[i] ?? options.port[0] ?? 5432, options.host[i] ?? "localhost");
    let timer: NodeJS.Timeout | undefined;
    const quiet = () => {
      const error = Object.assign(new Error(`no answer from Postgres for ${quietMs} ms (a silent connection)`), { code: "ETIMEDOUT" });
      socket.destroy(error);
    };
    // Owed an answer from the first byte sent until the first byte back; an answer in
    // several parts arrives in quick succession, and an idle connection owes nothing.
    const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
    socket.write = ((...args: unknown[]) => {
      timer ??= setTimeout(quiet, quietMs).unref();
      return write(...args);
    }) as typeof socket.write;
    const answered = () => {
      clearTimeout(timer);
      timer = undefined;
    };
    socket.on("data", answered);
    socket.on("close", answered);
    return socket;
  };
}
