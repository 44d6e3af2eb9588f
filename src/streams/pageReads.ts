// Reading a stream's entries: the page query, and PageReads, which groups reads of
// different streams asked for in the same turn of the event loop (one commit wakes every
// stream it wrote to) into one statement, the way the writer groups appends.
import type { PendingQuery, Row as DriverRow } from "postgres";
import type { Sql } from "../db/connect.js";
import { whole } from "../db/rows.js";
import type { Entry, Page } from "./feed.js";

/**
 * A page also stops once it holds MAX_PAGE_BYTES of values (its first entry always
 * counts, whatever its size), so a reader of 1 MiB values holds a few of them, not
 * 2,000. The sizes are the stored ones (pg_column_size), which migration 0004 makes the
 * real ones by storing values uncompressed.
 */
export const MAX_PAGE_BYTES = 4 * 1024 * 1024;

type Fragment = PendingQuery<DriverRow[]>;

/**
 * Up to `limit` entries of a stream from offset `from` on, in offset order, cut at
 * MAX_PAGE_BYTES; `upto` is the running total of their sizes. Shared by readPage and
 * readPages, whose stream and offset are a parameter or a column of theirs.
 */
function entriesFrom(sql: Sql, workflowId: Fragment | string, key: Fragment | string, from: Fragment | number, limit: number): Fragment {
  return sql`
    select "offset", value, closed, upto from (
      select "offset", value, closed, size,
             sum(size) over (order by "offset" rows unbounded preceding) as upto
      from (
        select "offset", value, closed, coalesce(pg_column_size(value), 0) as size from stream_entries
        where workflow_id = ${workflowId} and key = ${key} and "offset" >= ${from}
        order by "offset"
        limit ${limit}
      ) page
    ) sized
    where upto - size < ${MAX_PAGE_BYTES}`;
}

/**
 * One statement, one snapshot: the workflow's status and up to `limit` entries from
 * `from` on. A finished workflow has all its streams closed in the transaction that
 * finished it, so "finished and nothing more" means closed even for a stream the
 * workflow never wrote to. The close is always a stream's last entry, so a reader
 * starting past it finds it as the entry just before `from` (one backward index probe).
 */
export async function readPage(sql: Sql, workflowId: string, key: string, from: number, limit: number): Promise<Page> {
  const rows = whole(await sql`
    select s.status, b.closed as closed_before, e."offset", e.value, e.closed, e.upto
    from workflow_status s
    left join lateral (
      select closed from stream_entries
      where workflow_id = s.workflow_id and key = ${key} and "offset" < ${from}
      order by "offset" desc
      limit 1
    ) b on true
    left join lateral (${entriesFrom(sql, sql`s.workflow_id`, key, from, limit)}) e on true
    where s.workflow_id = ${workflowId}`);
  return toPage(rows, limit);
}

interface PageRequest {
  workflowId: string;
  key: string;
  from: number;
}

/**
 * readPage for many streams in one statement and one snapshot: the same two probes per
 * stream (keep the two in step), rows tagged with the request's position `i`.
 */
export async function readPages(sql: Sql, requests: PageRequest[], limit: number): Promise<Page[]> {
  const wanted = JSON.stringify(requests.map((r, i) => ({ i, w: r.workflowId, k: r.key, f: r.from })));
  const rows = whole(await sql`
    select r.i, s.status, b.closed as closed_before, e."offset", e.value, e.closed, e.upto
    from json_to_recordset(${wanted}::text::json) as r(i int, w text, k text, f bigint)
    left join workflow_status s on s.workflow_id = r.w
    left join lateral (
      select closed from stream_entries
      where workflow_id = r.w and key = r.k and "offset" < r.f
      order by "offset" desc
      limit 1
    ) b on true
    left join lateral (${entriesFrom(sql, sql`r.w`, sql`r.k`, sql`r.f`, limit)}) e on true`);
  const groups: Row[][] = requests.map(() => []);
  for (const row of rows) groups[row.i as number]!.push(row);
  return groups.map((group) => {
    // A nested loop yields each stream's entries in index order; do not rely on it blindly.
    for (let j = 1; j < group.length; j++) {
      if ((group[j]!.offset as number) < (group[j - 1]!.offset as number)) {
        group.sort((a, b) => (a.offset as number) - (b.offset as number));
        break;
      }
    }
    return group[0]!.status === null ? toPage([], limit) : toPage(group, limit);
  });
}

type Row = Record<string, unknown>;

function toPage(rows: readonly Row[], limit: number): Page {
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
  // Cut by count, or by size (the next entry would have passed MAX_PAGE_BYTES): read on at once.
  const cutBySize = entries.length > 0 && Number(rows[entries.length - 1]!.upto) >= MAX_PAGE_BYTES;
  const full = !closed && (rows.length === limit || cutBySize);
  if (!closed && !full && rows[0]!.status !== "PENDING") closed = true;
  return { found: true, entries, closed, full };
}

/** Most streams read by one statement. */
const MAX_STREAMS_PER_READ = 500;
/** Read statements in flight at once (the pool's default size). */
const IN_FLIGHT = 2;

/**
 * Groups reads, like the writer groups appends. Reads asked for in the same microtask
 * checkpoint (a commit's notifications arrive in one socket read, and the readers they
 * wake all ask within it) go out as one statement, at the end of that checkpoint: no
 * timer, no added delay for a lone read. While IN_FLIGHT statements are running, reads
 * queue and go out together when one finishes. Measured with 100 workflows × 1,000
 * awaited writes and a reader on each stream: one statement per commit instead of 100,
 * append throughput ~11k → ~27k entries/s, node CPU per entry ~80 → ~25 µs
 * (BENCHMARKS.md, scenario 2). A lone read keeps readPage's statement; in company each
 * stream's page is smaller (at least 20 rows), so one statement returns at most about
 * five pages' worth.
 */
export class PageReads {
  private queue: (PageRequest & { resolve: (page: Page) => void; reject: (error: unknown) => void })[] = [];
  private running = 0;
  private scheduled = false;

  constructor(private readonly sql: Sql, private readonly pageSize: number) {}

  read(workflowId: string, key: string, from: number): Promise<Page> {
    return new Promise((resolve, reject) => {
      this.queue.push({ workflowId, key, from, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        queueMicrotask(() => {
          this.scheduled = false;
          this.sendWhileFree();
        });
      }
    });
  }

  private sendWhileFree(): void {
    while (this.running < IN_FLIGHT && this.queue.length > 0) this.send();
  }

  private send(): void {
    const batch = this.queue.splice(0, MAX_STREAMS_PER_READ);
    const only = batch.length === 1 ? batch[0]! : undefined;
    const limit = only ? this.pageSize : Math.min(this.pageSize, Math.max(20, Math.floor((this.pageSize * 5) / batch.length)));
    const pages = only
      ? readPage(this.sql, only.workflowId, only.key, only.from, limit).then((page) => [page])
      : readPages(this.sql, batch, limit);
    this.running++;
    pages
      .then(
        (result) => batch.forEach((request, i) => request.resolve(result[i]!)),
        (error) => batch.forEach((request) => request.reject(error)),
      )
      .finally(() => {
        this.running--;
        if (!this.scheduled) this.sendWhileFree();
      });
  }
}
