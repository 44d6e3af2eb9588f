// One StreamFeed per stream that has local readers. It remembers what the listener has
// announced for the stream and runs the reads: readers asking for the same offset at
// the same moment share one query (after a wake-up, every live reader of the stream
// asks for the same next offset, so a wake costs one query however many readers wait).
import type { Sql } from "../db/connect.js";

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

export class StreamFeed {
  readers = 0;
  /** Highest offset a notification announced. */
  private highestNotified = -1;
  /** Bumped when anything may have been missed (reconnect) or the workflow ended. */
  private resets = 0;
  private waiters = new Set<Waiter>();
  private inflight = new Map<number, Promise<Page>>();

  constructor(
    private readonly sql: Sql,
    readonly workflowId: string,
    readonly key: string,
    private readonly pageSize: number,
  ) {}

  get resetCount(): number {
    return this.resets;
  }

  fetch(from: number): Promise<Page> {
    let page = this.inflight.get(from);
    if (!page) {
      page = readPage(this.sql, this.workflowId, this.key, from, this.pageSize).finally(() => {
        this.inflight.delete(from);
      });
      this.inflight.set(from, page);
    }
    return page;
  }

  notify(offset: number): void {
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
    for (const waiter of this.waiters) waiter.wake();
    this.waiters.clear();
  }

  /**
   * Waits until entry `from` may exist: a notification covered it, or a reset happened
   * since the caller's read began (`resetsBefore`). Returns at once if that is already so.
   */
  wait(from: number, resetsBefore: number, signal?: AbortSignal): Promise<void> {
    if (this.highestNotified >= from || this.resets !== resetsBefore) return Promise.resolve();
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const abort = () => {
        this.waiters.delete(waiter);
        reject(signal!.reason);
      };
      const waiter: Waiter = {
        from,
        wake: () => {
          signal?.removeEventListener("abort", abort);
          resolve();
        },
      };
      signal?.addEventListener("abort", abort, { once: true });
      this.waiters.add(waiter);
    });
  }
}

/**
 * One statement, one snapshot: the workflow's status and up to `limit` entries from
 * `from` on. A finished workflow has all its streams closed in the transaction that
 * finished it, so "finished and nothing more" means closed even for a stream the
 * workflow never wrote to. The close is always a stream's last entry, so a reader
 * starting past it finds it as the entry just before `from` (one backward index probe).
 */
export async function readPage(sql: Sql, workflowId: string, key: string, from: number, limit: number): Promise<Page> {
  const rows = await sql`
    select s.status, b.closed as closed_before, e."offset", e.value, e.closed
    from workflow_status s
    left join lateral (
      select closed from stream_entries
      where workflow_id = s.workflow_id and key = ${key} and "offset" < ${from}
      order by "offset" desc
      limit 1
    ) b on true
    left join lateral (
      select "offset", value, closed from stream_entries
      where workflow_id = s.workflow_id and key = ${key} and "offset" >= ${from}
      order by "offset"
      limit ${limit}
    ) e on true
    where s.workflow_id = ${workflowId}`;
  if (rows.length === 0) return { found: false, entries: [], closed: false, full: false };
  // Started past the close: nothing can follow it.
  if (rows[0]!.closed_before === true) return { found: true, entries: [], closed: true, full: false };
  const entries: Entry[] = [];
  let closed = false;
  for (const row of rows) {
    if (row.offset === null) break; // no entries: the lateral join gave one empty row
    if (row.closed) {
      closed = true;
      break;
    }
    entries.push({ offset: row.offset as number, value: row.value });
  }
  const full = rows.length === limit && !closed;
  if (!closed && !full && rows[0]!.status !== "PENDING") closed = true;
  return { found: true, entries, closed, full };
}
