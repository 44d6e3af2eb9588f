// Sockets for the query pool that notice a silent TCP path. A NAT or load balancer that
// forgets a connection drops its packets without closing it: a query sent on it then
// waits for the kernel's keepalive to give up, about 11 minutes with Linux's defaults,
// and so did every call behind it (the black-box attack held getStatus and close() for
// 90 s and more). Here a socket that owes an answer and has heard nothing for `quietMs`
// is destroyed with ETIMEDOUT: the query fails as a transient error and is retried on a
// new connection. (The listener has its heartbeat for the same job.) Not used on TLS
// connections (see connect.ts): those rely on the call's own deadline.
import net from "node:net";
import { ProtocolCounter } from "./protocolCounter.js";

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
    watch(socket, quietMs);
    return socket;
  };
}

function watch(socket: net.Socket, quietMs: number): void {
  // Answers are counted by the protocol, not by bytes: the answer to one query must not
  // clear the watch over a second one pipelined behind it.
  const owed = new ProtocolCounter();
  let timer: NodeJS.Timeout | undefined;
  const quiet = () => {
    const error = Object.assign(new Error(`no answer from Postgres for ${quietMs} ms (a silent connection)`), { code: "ETIMEDOUT" });
    socket.destroy(error);
  };
  // Any byte is progress (a long result streams): the silence is measured from the last.
  const rearm = () => {
    if (!owed.waiting) {
      clearTimeout(timer);
      timer = undefined;
    } else if (timer) timer.refresh();
    else timer = setTimeout(quiet, quietMs).unref();
  };
  const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
  socket.write = ((...args: unknown[]) => {
    if (Buffer.isBuffer(args[0]) || args[0] instanceof Uint8Array) owed.sent(args[0]);
    if (owed.waiting && !timer) rearm();
    return write(...args);
  }) as typeof socket.write;
  socket.on("data", (data: Buffer) => {
    owed.received(data);
    rearm();
  });
  socket.on("close", () => clearTimeout(timer));
}
