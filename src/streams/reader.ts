// A reader follows one stream from an offset: listen first, then read what is stored,
// then wait for a wake-up and read again, until the close. It holds at most one page
// of entries (shared with the stream's other readers), so a slow consumer pages
// through the table instead of buffering without bound.
import { isConnectionError } from "../db/connect.js";
import { asPgtideError, backoff } from "../db/retry.js";
import { WorkflowNotFoundError } from "../errors.js";
import type { Entry, Page } from "./feed.js";
import type { StreamFeeds } from "./feeds.js";
import type { Notifier } from "./notifier.js";

/**
 * `open` checks the caller's options at the first next() (a generator's body runs then:
 * a bad option rejects it, never throws at the call), and `project` shapes what is
 * yielded. Both live here rather than in generators wrapped around this one: each layer
 * of async generator costs every reader a few promises per entry, and with 10,000
 * readers of one stream two extra layers made delivery ~9× slower.
 */
export async function* readEntries<Out>(
  feeds: StreamFeeds,
  notifier: Notifier,
  workflowId: string,
  key: string,
  open: () => { fromOffset: number; signal?: AbortSignal },
  project: (entry: Entry) => Out,
): AsyncGenerator<Out, void, undefined> {
  const { fromOffset, signal } = open();
  // Register before the first read, so no wake-up after it can be missed.
  const feed = feeds.acquire(workflowId, key);
  // One abort listener for the reader's whole life; each read or wait only sets
  // `interrupt`. (EventTarget add/remove per wait cost ~10 µs a time: with 10,000
  // readers of one stream, more than 50 entries/s could not be delivered.)
  let interrupt: ((reason: unknown) => void) | undefined;
  const onAbort = () => interrupt?.(signal!.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  const interruptible = <T>(promise: Promise<T>, cancel?: () => void): Promise<T> => {
    if (!signal) return promise;
    return new Promise<T>((resolve, reject) => {
      interrupt = (reason) => {
        cancel?.();
        reject(reason);
      };
      if (signal.aborted) interrupt(signal.reason);
      else promise.then(resolve, reject);
    });
  };
  try {
    await notifier.ready(signal);
    let next = fromOffset;
    for (let failures = 0; ;) {
      signal?.throwIfAborted();
      const resets = feed.resetCount;
      let page: Page;
      try {
        page = await interruptible(feed.fetch(next));
      } catch (error) {
        // Postgres went away under the read (or the driver replays such an error once on
        // the first query after it is back): wait, like the listener, and re-read from
        // `next`. A reader gives up only when its signal says so.
        if (!isConnectionError(error)) throw asPgtideError("read stream", error);
        await backoff(failures++, signal);
        await notifier.ready(signal);
        continue;
      }
      failures = 0;
      if (!page.found) throw new WorkflowNotFoundError(workflowId);
      for (const entry of page.entries) {
        // A page is in memory already: an abort must still stop it between two entries.
        signal?.throwIfAborted();
        next = entry.offset + 1;
        yield project(entry);
      }
      if (page.closed) return;
      if (!page.full) {
        const wait = feed.wait(next, resets);
        await interruptible(wait.woken, wait.cancel);
      }
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
    feeds.release(feed);
  }
}
