// A reader follows one stream from an offset: listen first, then read what is stored,
// then wait for a wake-up and read again, until the close. It holds at most one page
// of entries (shared with the stream's other readers), so a slow consumer pages
// through the table instead of buffering without bound.
import { WorkflowNotFoundError } from "../errors.js";
import type { Entry } from "./feed.js";
import type { StreamFeeds } from "./feeds.js";
import type { Notifier } from "./notifier.js";

export async function* readEntries<T>(
  feeds: StreamFeeds,
  notifier: Notifier,
  workflowId: string,
  key: string,
  fromOffset: number,
  signal?: AbortSignal,
): AsyncGenerator<Entry<T>, void, undefined> {
  // Register before the first read, so no wake-up after it can be missed.
  const feed = feeds.acquire(workflowId, key);
  try {
    await notifier.ready(signal);
    let next = fromOffset;
    for (;;) {
      signal?.throwIfAborted();
      const resets = feed.resetCount;
      const page = await abortable(feed.fetch(next), signal);
      if (!page.found) throw new WorkflowNotFoundError(workflowId);
      for (const entry of page.entries) {
        next = entry.offset + 1;
        yield entry as Entry<T>;
      }
      if (page.closed) return;
      if (!page.full) await feed.wait(next, resets, signal);
    }
  } finally {
    feeds.release(feed);
  }
}

function abortable<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return promise;
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const abort = () => reject(signal.reason);
    signal.addEventListener("abort", abort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", abort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener("abort", abort);
        reject(error);
      },
    );
  });
}
