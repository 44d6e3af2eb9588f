// One StreamFeed per stream that has local readers. It remembers what the listener has
// announced for the stream and runs the reads: readers asking for the same offset at
// the same moment share one query (after a wake-up, every live reader of the stream
// asks for the same next offset, so a wake costs one query however many readers wait).
import type { PageReads } from "./pageReads.js";

export interface Entry<T = unknown> {
  offset: number;
  value: T;
}

export interface Page {
  /** False when the workflow does not exist. */
  found: boolean;
  /** Entries in offset order, the close excluded. */
  entries: Entry[];
  /** The close was reached (stored, or implied by a finished workflow with nothing more). */
  closed: boolean;
  /** The page hit its size limit: more may follow at once. */
  full: boolean;
}

interface Waiter {
  from: number;
  wake: () => void;
}

/** A reader's wait for entry `from`: `woken` resolves when it may exist; `cancel` withdraws it. */
export interface Wait {
  woken: Promise<void>;
  cancel: () => void;
}

const READY: Wait = { woken: Promise.resolve(), cancel: () => {} };

export class StreamFeed {
  readers = 0;
  /** Highest offset a notification announced. */
  private highestNotified = -1;
  /** A notification announced the close: every read from now on finds it. */
  private closeNotified = false;
  /** Bumped when anything may have been missed (reconnect) or the workflow ended. */
  private resets = 0;
  private waiters = new Set<Waiter>();
  private inflight = new Map<number, Promise<Page>>();

  constructor(
    private readonly pages: PageReads,
    readonly workflowId: string,
    readonly key: string,
  ) {}

  get resetCount(): number {
    return this.resets;
  }

  fetch(from: number): Promise<Page> {
    let page = this.inflight.get(from);
    if (!page) {
      const read: Promise<Page> = this.pages.read(this.workflowId, this.key, from).finally(() => {
        if (this.inflight.get(from) === read) this.inflight.delete(from);
      });
      this.inflight.set(from, (page = read));
    }
    return page;
  }

  /**
   * Entries up to `offset` exist. With `closed`, the stream ends there: every waiter
   * wakes, including those waiting for an offset past the close (a client resuming from
   * the end), and re-reads to find it.
   */
  notify(offset: number, closed: boolean): void {
    if (closed) {
      this.closeNotified = true;
      this.highestNotified = Math.max(this.highestNotified, offset);
      for (const waiter of this.waiters) waiter.wake();
      this.waiters.clear();
      return;
    }
    if (offset <= this.highestNotified) return;
    this.highestNotified = offset;
    for (const waiter of this.waiters) {
      if (waiter.from <= offset) {
        this.waiters.delete(waiter);
        waiter.wake();
      }
    }
  }

  reset(): void {
    this.resets++;
    // A read begun before the reset may predate what it announces: whoever asks after it
    // (having noted the new reset count) must not share that read, but start its own.
    this.inflight.clear();
    for (const waiter of this.waiters) waiter.wake();
    this.waiters.clear();
  }

  /**
   * Waits until entry `from` may exist: a notification covered it, or a reset happened
   * since the caller's read began (`resetsBefore`). Ready at once if that is already so.
   * No AbortSignal here: a reader aborts by calling `cancel` from the one abort listener
   * it holds for its whole life. (A listener added and removed per wait cost ~10 µs per
   * reader per entry: 10,000 readers of one stream then fell behind 50 writes/s.)
   */
  wait(from: number, resetsBefore: number): Wait {
    if (this.highestNotified >= from || this.closeNotified || this.resets !== resetsBefore) return READY;
    const waiter: Waiter = { from, wake: () => {} };
    const woken = new Promise<void>((resolve) => (waiter.wake = resolve));
    this.waiters.add(waiter);
    return { woken, cancel: () => this.waiters.delete(waiter) };
  }
}
