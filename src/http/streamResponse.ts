// A stream as an HTTP response, for any fetch-style server: Server-Sent Events that a
// browser's EventSource resumes by offset, or (with ?format=json) a JSON range that a
// CDN may cache for good once the stream is closed.
import type { Engine } from "../engine.js";
import { isConnectionError } from "../db/connect.js";
import { ConnectionError, EngineClosedError, InvalidArgumentError, WorkflowNotFoundError } from "../errors.js";
import { MAX_TIMER_MS } from "../sleep.js";
import { assertName, describe } from "../validate.js";
import { rangeResponse } from "./rangeResponse.js";
import { sseBody } from "./sseBody.js";

export interface StreamRequest {
  request: Request;
  workflowId: string;
  key: string;
}

export interface StreamResponseOptions {
  /** Usually a path segment: undefined (a path too short) is the client's error, a 400. */
  workflowId: string | undefined;
  key: string | undefined;
  /** The incoming request: its headers, query and AbortSignal (a disconnect frees the reader). */
  request: Request;
  /**
   * Required: whether this request may read this stream. Only `true` allows it; anything
   * else is a 403. `() => true` is an explicit decision to serve everyone.
   */
  authorize: (stream: StreamRequest) => boolean | Promise<boolean>;
  /** Interval of the comment lines that keep proxies from cutting an idle stream. @default 15000 */
  heartbeatMs?: number;
  /**
   * The longest the answer waits for Postgres (the workflow lookup, the JSON range) before
   * it is a 503: the engine's own retries end at its `retryTimeoutMs`, but a server that
   * accepts connections and drops them at once can hold a call for good. @default 10000
   */
  timeoutMs?: number;
}

const DEFAULT_HEARTBEAT_MS = 15_000;
const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * Answers a request for one stream with a web `Response`:
 *
 * - `text/event-stream` by default: each entry is `id: <offset>` + `data: <JSON>`, the
 *   close is `event: close`, then the response ends. `Last-Event-ID` (header, or the
 *   `lastEventId` query parameter) resumes at the next offset.
 * - `?format=json&from=&to=`: the entries with `from ≤ offset < to` as JSON; immutable
 *   (cacheable for a year, with an ETag) once the stream is closed, `no-store` before.
 *
 * What the client sent decides the status, never a 500: 405 a method other than GET or
 * HEAD, 400 a malformed id, key or parameter (the text names it and what it accepts), 403
 * a refused `authorize`, 404 an unknown workflow, 503 (with Retry-After) Postgres out of
 * reach or the engine closing. It rejects only on the app's own mistakes: bad options,
 * an `authorize` that throws, a failure of Postgres that is not an outage.
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
  // undefined is what a router gives for a path too short (`pathname.split("/")`): the
  // client's doing. Any other non-string no URL can produce: the app's.
  if (workflowId !== undefined && typeof workflowId !== "string") {
    throw new InvalidArgumentError(`workflowId must be a string, got ${describe(workflowId)}`);
  }
  if (key !== undefined && typeof key !== "string") throw new InvalidArgumentError(`stream key must be a string, got ${describe(key)}`);
  // Timers: past 2^31 − 1 ms Node fires after 1 ms instead. null is a wrong value, not "the default".
  const heartbeatMs = options.heartbeatMs === undefined ? DEFAULT_HEARTBEAT_MS : options.heartbeatMs;
  if (typeof heartbeatMs !== "number" || !Number.isFinite(heartbeatMs) || heartbeatMs <= 0 || heartbeatMs > MAX_TIMER_MS) {
    throw new InvalidArgumentError(`heartbeatMs must be a positive number of milliseconds up to ${MAX_TIMER_MS}, got ${describe(heartbeatMs)}`);
  }
  const timeoutMs = options.timeoutMs === undefined ? DEFAULT_TIMEOUT_MS : options.timeoutMs;
  if (typeof timeoutMs !== "number" || !Number.isFinite(timeoutMs) || timeoutMs <= 0 || timeoutMs > MAX_TIMER_MS) {
    throw new InvalidArgumentError(`timeoutMs must be a positive number of milliseconds up to ${MAX_TIMER_MS}, got ${describe(timeoutMs)}`);
  }

  if (request.method !== "GET" && request.method !== "HEAD") {
    return textResponse(405, `method ${describe(request.method)} is not allowed: a stream is read with GET (or HEAD)`, { allow: "GET, HEAD" });
  }
  // Ids and keys usually come from the URL: a bad one is the client's error.
  let query: Query;
  try {
    if (workflowId === undefined) throw new BadRequest("workflowId is missing");
    if (key === undefined) throw new BadRequest("stream key is missing");
    assertName("workflowId", workflowId);
    assertName("stream key", key);
    query = parseQuery(request);
  } catch (error) {
    if (error instanceof BadRequest || error instanceof InvalidArgumentError) return textResponse(400, error.message);
    throw error;
  }

  if ((await authorize({ request, workflowId, key })) !== true) {
    return textResponse(403, `not allowed to read stream "${key}" of workflow "${workflowId}"`);
  }

  const late = new AbortController();
  const timer = setTimeout(() => late.abort(new NoAnswer(timeoutMs)), timeoutMs);
  try {
    if (query.format === "json") {
      const signal = AbortSignal.any([request.signal, late.signal]);
      return await answerBy(late.signal, rangeResponse(engine, request, signal, workflowId, key, query.from, query.to));
    }
    await answerBy(late.signal, engine.getWorkflow(workflowId)); // a 404 (or 503) must be decided before the 200 goes out
    const stop = new AbortController();
    const signal = AbortSignal.any([request.signal, stop.signal]);
    const entries = engine.readStreamEntries(workflowId, key, { fromOffset: query.from, signal });
    return new Response(sseBody(entries, stop, signal, heartbeatMs, request), {
      status: 200,
      headers: {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-accel-buffering": "no", // nginx: pass events through as they come
      },
    });
  } catch (error) {
    const refusal = refusalOf(error, request);
    if (refusal) return refusal;
    throw error;
  } finally {
    clearTimeout(timer);
  }
}


/** Postgres did not answer within the door's timeoutMs. */
class NoAnswer extends Error {
  constructor(readonly timeoutMs: number) {
    super(`no answer from the database within ${timeoutMs} ms`);
  }
}

/**
 * The engine's answer, or a rejection with `late`'s reason once it is aborted. The call
 * left behind only reads, so abandoning it is harmless; its later failure is nobody's.
 */
function answerBy<T>(late: AbortSignal, call: Promise<T>): Promise<T> {
  call.catch(() => {});
  return new Promise<T>((resolve, reject) => {
    const onLate = () => reject(late.reason);
    if (late.aborted) return onLate();
    late.addEventListener("abort", onLate, { once: true });
    call.then(resolve, reject).finally(() => late.removeEventListener("abort", onLate));
  });
}

/** Seconds a client is told to wait (Retry-After) when Postgres is out of reach or the engine is closing. */
const RETRY_AFTER_SECONDS = 2;

/**
 * The answer to a failure of the engine that is not the app's bug: the client's input
 * (400, 404), an outage or a closing engine (503), a client gone while the engine retried.
 */
function refusalOf(error: unknown, request: Request): Response | undefined {
  if (error instanceof InvalidArgumentError) return textResponse(400, error.message);
  if (error instanceof WorkflowNotFoundError) return textResponse(404, error.message);
  const code = (error as { code?: unknown } | null)?.code;
  // A raw driver error too, for a call that does not wrap it: ended pools mean a closing engine.
  if (error instanceof EngineClosedError || code === "CONNECTION_ENDED" || code === "CONNECTION_DESTROYED") {
    return textResponse(503, "the stream is not available: the server is shutting down; retry later", RETRY_AFTER);
  }
  if (error instanceof ConnectionError || isConnectionError(error)) {
    return textResponse(503, "the stream is not available: the database cannot be reached; retry later", RETRY_AFTER);
  }
  if (error instanceof NoAnswer) {
    return textResponse(503, `the stream is not available: the database did not answer within ${error.timeoutMs} ms; retry later`, RETRY_AFTER);
  }
  // The engine's retries end on the request's signal: nobody is left to answer.
  if (request.signal.aborted && error === request.signal.reason) return textResponse(499, "the client closed the request");
  return undefined;
}

const RETRY_AFTER = { "retry-after": String(RETRY_AFTER_SECONDS) };

/** Last-Event-ID n resumes at n + 1, which must still be an offset. */
const MAX_LAST_EVENT_ID = Number.MAX_SAFE_INTEGER - 1;
const MAX_OFFSET = Number.MAX_SAFE_INTEGER;

type Query = { format: "sse"; from: number } | { format: "json"; from: number; to: number | undefined };

/** A 400 whose message starts with the parameter's name. */
class BadRequest extends Error {}

function parseQuery(request: Request): Query {
  const params = new URL(request.url).searchParams;
  const format = single(params, "format") ?? "sse";
  if (format !== "sse" && format !== "json") throw new BadRequest(`format must be "sse" or "json", got ${describe(format)}`);
  if (format === "json") {
    const from = parseOffset("from", single(params, "from"), MAX_OFFSET) ?? 0;
    const to = parseOffset("to", single(params, "to"), MAX_OFFSET);
    if (to !== undefined && to < from) throw new BadRequest(`to (${to}) must not be below from (${from})`);
    return { format, from, to };
  }
  // The header wins: an EventSource reconnecting to a URL with ?lastEventId= sends a newer one.
  // (Headers.get joins a header sent twice with ", ", which no offset matches.)
  const header = request.headers.get("last-event-id");
  const lastEventId = header
    ? parseOffset("Last-Event-ID", header, MAX_LAST_EVENT_ID)
    : parseOffset("lastEventId", single(params, "lastEventId"), MAX_LAST_EVENT_ID);
  return { format, from: lastEventId === undefined ? 0 : lastEventId + 1 };
}

/** A query parameter's one value; undefined when absent or empty; a 400 when repeated. */
function single(params: URLSearchParams, name: string): string | undefined {
  const values = params.getAll(name);
  if (values.length > 1) throw new BadRequest(`${name} is given ${values.length} times; give it once`);
  return values[0] || undefined;
}

/** Decimal digits, no sign, no leading zero, at most `max`; undefined when absent. */
function parseOffset(name: string, text: string | undefined, max: number): number | undefined {
  if (text === undefined) return undefined;
  // 16 digits at most, so Number() is exact up to the comparison with max (< 2^53).
  if (/^(0|[1-9][0-9]{0,15})$/.test(text)) {
    const value = Number(text);
    if (value <= max) return value;
  }
  throw new BadRequest(`${name} must be an integer from 0 to ${max} (decimal digits, no sign or leading zero), got ${describe(text)}`);
}

function textResponse(status: number, message: string, headers: Record<string, string> = {}): Response {
  return new Response(`${message}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store", ...headers },
  });
}
