// The body of a Server-Sent Events response: one event per entry, a comment line as a
// heartbeat, `event: close` at the end. Pulled one entry at a time, so a slow client
// holds back its reader (which pages through the table) instead of filling memory.
import { EngineClosedError } from "../errors.js";
import type { Entry as StreamEntry } from "../streams/feed.js";

const encoder = new TextEncoder();
const HEARTBEAT = encoder.encode(": heartbeat\n\n");
// An event with no data is never dispatched by EventSource, hence the empty data line.
const CLOSE = encoder.encode("event: close\ndata:\n\n");

/**
 * `stop` is aborted when the body ends for any reason; `signal` (which includes `stop`)
 * aborts the reader and ends the body. Either way the reader is freed at once. A reader
 * ended by the engine closing ends the body without the close event.
 *
 * `request` is held until the body ends: Node's Request follows the signal it was made
 * with only while the Request itself is reachable (nodejs/node#55428), so a client that
 * left after a garbage collection was otherwise never noticed.
 */
export function sseBody(
  entries: AsyncGenerator<StreamEntry, void, undefined>,
  stop: AbortController,
  signal: AbortSignal,
  heartbeatMs: number,
  request: Request,
): ReadableStream<Uint8Array> {
  let heartbeat: NodeJS.Timeout | undefined;
  let finished = false;
  const holding: { request?: Request } = { request };
  const finish = () => {
    if (finished) return false;
    finished = true;
    delete holding.request;
    clearInterval(heartbeat);
    stop.abort();
    // Frees the reader even when it is parked at a yield rather than waiting on the signal.
    entries.return(undefined).catch(() => {});
    return true;
  };

  return new ReadableStream<Uint8Array>({
    start(controller) {
      heartbeat = setInterval(() => controller.enqueue(HEARTBEAT), heartbeatMs);
      heartbeat.unref();
      const onAbort = () => {
        if (finish()) controller.close();
      };
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
    },
    async pull(controller) {
      let next: IteratorResult<StreamEntry, void>;
      try {
        next = await entries.next();
      } catch (error) {
        if (!finish()) return; // the client left and the abort ended the read
        // The engine is closing (a deploy, a shutdown): end the body without `event: close`,
        // so the client (EventSource) reconnects, to this server or another. Not a failure.
        if (error instanceof EngineClosedError) controller.close();
        else controller.error(error);
        return;
      }
      if (finished) return;
      if (next.done) {
        controller.enqueue(CLOSE);
        finish();
        controller.close();
        return;
      }
      // JSON.stringify never emits a raw CR or LF, so one data line always suffices.
      controller.enqueue(encoder.encode(`id: ${next.value.offset}\ndata: ${JSON.stringify(next.value.value)}\n\n`));
    },
    cancel() {
      finish();
    },
  });
}
