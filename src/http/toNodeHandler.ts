// Serves a fetch-style handler `(Request) => Response` from node:http. The one thing it
// must not lose is the disconnect: when the client goes away, the Request's signal is
// aborted and the response body cancelled, so a stream's reader is freed at once.
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import { Readable } from "node:stream";

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
    res.writeHead(400, { "content-type": "text/plain; charset=utf-8" }).end(`${(error as Error).message}\n`);
    return;
  }

  let response: Response;
  try {
    response = await handler(request);
  } catch (error) {
    if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain; charset=utf-8" }).end("internal server error\n");
    throw error;
  }
  await send(response, req.method === "HEAD", res, disconnect.signal);
}

function toRequest(req: IncomingMessage, signal: AbortSignal): Request {
  const scheme = (req.socket as { encrypted?: boolean }).encrypted ? "https" : "http";
  const url = new URL(req.url ?? "/", `${scheme}://${req.headers.host ?? "localhost"}`);
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
