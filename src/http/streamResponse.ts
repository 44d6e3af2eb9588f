// A stream as an HTTP response, for any fetch-style server: Server-Sent Events that a
// browser's EventSource resumes by offset, or (with ?format=json) a JSON range that a
// CDN may cache for good once the stream is closed.
import type { Engine } from "../engine.js";
import { EngineClosedError, InvalidArgumentError, WorkflowNotFoundError } from "../errors.js";
import { assertName, describe } from "../validate.js";
import { rangeResponse } from "./rangeResponse.js";
import { sseBody } from "./sseBody.js";

export interface StreamRequest {
  request: Request;
  workflowId: string;
  key: string;
}

export interface StreamResponseOptions {
  workflowId: string;
  key: string;
  /** The incoming request: its headers, query and AbortSignal (a disconnect frees the reader). */
  request: Request;
  /**
   * Required: whether this request may read this stream. Only `true` allows it; anything
   * else is a 403. `() => true` is an explicit decision to serve everyone.
   */
  authorize: (stream: StreamRequest) => boolean | Promise<boolean>;
  /** Interval of the comment lines that keep proxies from cutting an idle stream. @default 15000 */
  heartbeatMs?: number;
}

const DEFAULT_HEARTBEAT_MS = 15_000;

/**
 * Answers a request for one stream with a web `Response`:
 *
 * - `text/event-stream` by default: each entry is `id: <offset>` + `data: <JSON>`, the
 *   close is `event: close`, then the response ends. `Last-Event-ID` (header, or the
 *   `lastEventId` query parameter) resumes at the next offset.
 * - `?format=json&from=&to=`: the entries with `from ≤ offset < to` as JSON; immutable
 *   (cacheable for a year, with an ETag) once the stream is closed, `no-store` before.
 *
 * Malformed parameters are a 400, a refused `authorize` a 403, an unknown workflow a 404.
 */
export async function streamResponse(engine: Engine, options: StreamResponseOptions): Promise<Response> {
  if (typeof options !== "object" || options === null) {
    throw new InvalidArgumentError(`streamResponse options must be an object, got ${describe(options)}`);
  }
  const { workflowId, key, request, authorize } = options;
  if (typeof authorize !== "function") {
    throw new InvalidArgumentError(
      "streamResponse needs an authorize function: decide who may read the stream (`authorize: () => true` serves everyone)",
    );
  }
  if (!(request instanceof Request)) {
    throw new InvalidArgumentError(`streamResponse needs the incoming Request, got ${describe(request)}`);
  }
  if (typeof workflowId !== "string") throw new InvalidArgumentError(`workflowId must be a string, got ${describe(workflowId)}`);
  if (typeof key !== "string") throw new InvalidArgumentError(`stream key must be a string, got ${describe(key)}`);
  const heartbeatMs = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
  if (typeof heartbeatMs !== "number" || !Number.isFinite(heartbeatMs) || heartbeatMs <= 0) {
    throw new InvalidArgumentError(`heartbeatMs must be a positive number, got ${describe(heartbeatMs)}`);
  }

  // Ids and keys usually come from the URL: a bad one is the client's error.
  try {
    assertName("workflowId", workflowId);
    assertName("stream key", key);
  } catch (error) {
    return textResponse(400, (error as Error).message);
  }
  const params = new URL(request.url).searchParams;
  const format = params.get("format") ?? "sse";
  if (format !== "sse" && format !== "json") return textResponse(400, `format must be "sse" or "json", got ${describe(format)}`);

  let fromOffset: number;
  let toOffset: number | undefined;
  try {
    if (format === "json") {
      fromOffset = parseOffset("from", params.get("from")) ?? 0;
      toOffset = parseOffset("to", params.get("to"));
      if (toOffset !== undefined && toOffset < fromOffset) throw new RangeError(`to (${toOffset}) must not be below from (${fromOffset})`);
    } else {
      // The header wins: an EventSource reconnecting to a URL with ?lastEventId= sends a newer one.
      const header = request.headers.get("last-event-id");
      const lastEventId = parseOffset("Last-Event-ID", header || params.get("lastEventId"));
      fromOffset = lastEventId === undefined ? 0 : lastEventId + 1;
    }
  } catch (error) {
    return textResponse(400, (error as Error).message);
  }

  if ((await authorize({ request, workflowId, key })) !== true) {
    return textResponse(403, `not allowed to read stream "${key}" of workflow "${workflowId}"`);
  }

  try {
    if (format === "json") return await rangeResponse(engine, request, workflowId, key, fromOffset, toOffset);
    await engine.getWorkflow(workflowId); // a 404 must be decided before the 200 goes out
    const stop = new AbortController();
    const signal = AbortSignal.any([request.signal, stop.signal]);
    const entries = engine.readStreamEntries(workflowId, key, { fromOffset, signal });
    return new Response(sseBody(entries, stop, signal, heartbeatMs), {
      status: 200,
      headers: {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-accel-buffering": "no", // nginx: pass events through as they come
      },
    });
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return textResponse(404, error.message);
    if (error instanceof EngineClosedError) return textResponse(503, error.message);
    throw error;
  }
}

/** A decimal non-negative integer, or undefined when absent; RangeError otherwise. */
function parseOffset(name: string, text: string | null): number | undefined {
  if (text === null || text === "") return undefined;
  const value = /^(0|[1-9][0-9]{0,15})$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value)) throw new RangeError(`${name} must be a non-negative integer offset, got ${describe(text)}`);
  return value;
}

function textResponse(status: number, message: string): Response {
  return new Response(`${message}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
  });
}
