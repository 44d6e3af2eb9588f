// Serves a fetch-style handler `(Request) => Response` from node:http. The one thing it
// must not lose is the disconnect: when the client goes away, the Request's signal is
// aborted and the response body cancelled, so a stream's reader is freed at once.
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import { Readable } from "node:stream";
import { describe } from "../validate.js";

export type FetchHandler = (request: Request) => Response | Promise<Response>;

export interface NodeHandlerOptions {
  /** Called with a failure of the handler (answered with a 500) or of a response body. @default console.error */
  onError?: (error: unknown) => void;
}

export function toNodeHandler(
  handler: FetchHandler, options: NodeHandlerOptions = {},
): (req: IncomingMessage, res: ServerResponse) => void {
  const onError = options.onError ?? ((error: unknown) => console.error("pgtide/http:", error));
  return (req, res) => {
    serve(handler, req, res).catch(onError);
  };
}

async function serve(handler: FetchHandler, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const disconnect = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) disconnect.abort(new Error("the client disconnected"));
  });

  let request: Request;
  try {
    request = toRequest(req, disconnect.signal);
  } catch (error) {
    // Only the client's request can fail here (its Host, target or method).
    const message = error instanceof Error ? error.message : String(error);
    res.writeHead(400, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" }).end(`${message}\n`);
    return;
  }

  let response: Response;
  try {
    response = await handler(request);
    if (!(response instanceof Response)) throw new TypeError(`the handler must return a Response, got ${describe(response)}`);
  } catch (error) {
    if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain; charset=utf-8" }).end("internal server error\n");
    throw error;
  }
  await send(response, req.method === "HEAD", res, disconnect.signal);
}

// A Host is a host (reg-name, IPv4, [IP-literal]) and an optional port, in these characters
// (RFC 9110 7.2, RFC 3986 3.2.2); the URL parser checks the rest. Anything else (a path, a
// query, userinfo, spaces) is a 400, which RFC 9112 3.2 asks for.
const HOST = /^[A-Za-z0-9\-._~%!$&'()*+,;=:[\]]+$/;

function toRequest(req: IncomingMessage, signal: AbortSignal): Request {
  const scheme = (req.socket as { encrypted?: boolean }).encrypted ? "https" : "http";
  let hosts = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]!.toLowerCase() === "host") hosts++;
  if (hosts > 1) throw new Error("more than one Host header");
  // HTTP/1.0 may send none, and HTTP/1.1 an empty one (node:http refuses a missing one).
  const host = req.headers.host || "localhost";
  let origin: URL | undefined;
  if (HOST.test(host)) {
    try {
      origin = new URL(`${scheme}://${host}`);
    } catch {
      // below
    }
  }
  if (!origin) throw new Error(`malformed Host header ${describe(host)}`);
  const target = req.url ?? "/";
  let url: URL;
  try {
    // An origin-form target is a path, even one starting with "//" (not another host);
    // an absolute-form one names its own host; "*" (OPTIONS) is the origin's.
    url = target.startsWith("/") ? new URL(`${origin.origin}${target}`) : new URL(target, origin);
  } catch {
    throw new Error(`malformed request target ${describe(target)}`);
  }
  if (url.username || url.password) throw new Error("a request target must not hold credentials");
  const headers = new Headers();
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!;
    if (!name.startsWith(":")) headers.append(name, req.rawHeaders[i + 1]!);
  }
  const method = req.method ?? "GET";
  const hasBody = method !== "GET" && method !== "HEAD";
  return new Request(url, {
    method,
    headers,
    signal,
    ...(hasBody ? { body: Readable.toWeb(req) as unknown as ReadableStream<Uint8Array>, duplex: "half" as const } : {}),
  });
}

async function send(response: Response, head: boolean, res: ServerResponse, signal: AbortSignal): Promise<void> {
  const headers: OutgoingHttpHeaders = {};
  response.headers.forEach((value, name) => {
    if (name !== "set-cookie") headers[name] = value;
  });
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) headers["set-cookie"] = cookies;
  res.writeHead(response.status, response.statusText || undefined, headers);

  const body = response.body;
  if (!body || head) {
    await body?.cancel();
    res.end();
    return;
  }
  res.flushHeaders(); // an event stream may not write for a while: the client should know it is open
  const reader = body.getReader();
  const cancel = () => void reader.cancel(signal.reason).catch(() => {});
  signal.addEventListener("abort", cancel, { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || res.destroyed) break;
      if (!res.write(value)) await drained(res);
    }
    if (!res.destroyed) res.end();
  } catch (error) {
    res.destroy();
    if (!signal.aborted) throw error;
  } finally {
    signal.removeEventListener("abort", cancel);
  }
}

function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}
