// Shared by the test/http.*.test.ts files: a real node:http server running toNodeHandler
// with the router docs/http.md shows, and a raw HTTP client (node:http.request) that can
// send what fetch refuses to (repeated headers, Latin-1 bytes, HEAD bodies, raw paths).
import http from "node:http";
import type { AddressInfo } from "node:net";
import { streamResponse, toNodeHandler } from "../src/http/index.js";
import type { Engine } from "../src/index.js";

export interface TestServer {
  base: string;
  port: number;
  /** Everything toNodeHandler reported to onError, in order. */
  errors: unknown[];
  close(): Promise<void>;
}

/** The router of docs/http.md: GET /streams/:workflowId/:key, each segment percent-encoded. */
export function streamRoute(
  engine: Engine,
  options: { timeoutMs?: number; authorize?: (request: Request) => boolean | Promise<boolean> } = {},
) {
  const authorize = options.authorize ?? ((request: Request) => request.headers.get("authorization") !== "Bearer nope");
  return async (request: Request): Promise<Response> => {
    const match = /^\/streams\/([^/]+)\/([^/]+)$/.exec(new URL(request.url).pathname);
    if (!match) return new Response("not found\n", { status: 404 });
    let workflowId: string;
    let key: string;
    try {
      workflowId = decodeURIComponent(match[1]!);
      key = decodeURIComponent(match[2]!);
    } catch {
      return new Response("malformed percent-encoding in the path\n", { status: 400 });
    }
    return streamResponse(engine, {
      workflowId, key, request, authorize: ({ request: r }) => authorize(r), heartbeatMs: 60_000, timeoutMs: options.timeoutMs,
    });
  };
}

export async function startServer(handler: (request: Request) => Response | Promise<Response>): Promise<TestServer> {
  const errors: unknown[] = [];
  const server = http.createServer(toNodeHandler(handler, { onError: (error) => errors.push(error) }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    base: `http://127.0.0.1:${port}`,
    port,
    errors,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * One request through node:http.request, read to its end (so only for responses that
 * end: finished streams, refusals). Header values may repeat (an array sends the header
 * once per value) and may hold any byte node:http allows in a value (tab, 0x20-0x7e,
 * 0x80-0xff); `path` is sent as it is.
 */
export function request(
  port: number, path: string, options: { method?: string; headers?: Record<string, string | string[]>; body?: string } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    // node:http sends a DELETE's or OPTIONS's body with no length unless told: say it.
    const headers = options.body === undefined ? options.headers : { "content-length": String(Buffer.byteLength(options.body)), ...options.headers };
    const req = http.request({ host: "127.0.0.1", port, path, method: options.method ?? "GET", headers, agent: false });
    req.once("error", reject);
    req.once("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.once("error", reject);
      res.once("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
    });
    req.end(options.body);
  });
}

export interface SseEvent {
  id?: string;
  event: string;
  data: string;
}

/** Parses a whole event-stream body (comments dropped). */
export function parseSse(text: string): SseEvent[] {
  const events: SseEvent[] = [];
  for (const block of text.split("\n\n")) {
    if (block === "") continue;
    const event: SseEvent = { event: "message", data: "" };
    let hasData = false;
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = line.slice(0, colon);
      const value = line.slice(colon + 1).replace(/^ /, "");
      if (field === "id") event.id = value;
      else if (field === "event") event.event = value;
      else if (field === "data") {
        event.data = hasData ? `${event.data}\n${value}` : value;
        hasData = true;
      }
    }
    if (hasData) events.push(event);
  }
  return events;
}

/** The entries ([offset, value]) of a whole event-stream body, and whether it ended with the close event. */
export function sseEntries(text: string): { entries: [number, unknown][]; closed: boolean } {
  const events = parseSse(text);
  const closed = events.at(-1)?.event === "close";
  const entries = events.filter((e) => e.event === "message").map((e): [number, unknown] => [Number(e.id), JSON.parse(e.data)]);
  return { entries, closed };
}

export const MAX = Number.MAX_SAFE_INTEGER; // 9007199254740991
