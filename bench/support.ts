// What every scenario shares: the result shape, statistics, pacing, deadlines, and the
// raw postgres.js connections the baselines use (no pgtide code on those paths).
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import postgres from "postgres";
import { gate, within } from "../test/support/async.js";

export { gate, within };

export type Sql = postgres.Sql;

/** min / median / p99 (and max) of a sample, in the row's unit. */
export interface Dist {
  n: number;
  min: number;
  median: number;
  p99: number;
  max: number;
}

/** One measured line: pgtide's figure, the baseline it is compared with, and their ratio. */
export interface Row {
  label: string;
  unit: "ms" | "entries/s" | "MB" | "connections" | "s";
  value: Dist;
  baseline?: { label: string; value: Dist };
  /** value / baseline, on the medians (and on the p99s when both are latencies). */
  ratio?: { median: number; p99?: number };
}

export interface Target {
  text: string;
  measured: string;
  ok: boolean;
}

export interface ScenarioResult {
  id: string;
  title: string;
  /** One or two sentences: what was measured, how. */
  what: string;
  rows: Row[];
  targets: Target[];
  notes: string[];
  seconds: number;
}

export interface ScenarioContext {
  url: string;
  /** A fresh schema, dropped by the runner after the scenario (whatever happens). */
  schema: string;
  quick: boolean;
  /** Wall-clock ms this scenario may take before the runner kills it. */
  budgetMs: number;
  log: (line: string) => void;
}

export interface Scenario {
  id: string;
  title: string;
  /** The runner's hard limit, in seconds, per mode. */
  timeout: { quick: number; full: number };
  run(ctx: ScenarioContext): Promise<ScenarioResult>;
}

// ---------------------------------------------------------------------------- statistics

/** Nearest-rank percentiles; sorts a copy. */
export function dist(samples: ArrayLike<number>): Dist {
  const sorted = Float64Array.from(samples).sort();
  const n = sorted.length;
  if (n === 0) return { n: 0, min: NaN, median: NaN, p99: NaN, max: NaN };
  const at = (p: number) => sorted[Math.min(n - 1, Math.max(0, Math.ceil(p * n) - 1))]!;
  return { n, min: sorted[0]!, median: at(0.5), p99: at(0.99), max: sorted[n - 1]! };
}

export function single(value: number): Dist {
  return { n: 1, min: value, median: value, p99: value, max: value };
}

export function latencyRow(label: string, value: Dist, baseline?: { label: string; value: Dist }): Row {
  return {
    label,
    unit: "ms",
    value,
    ...(baseline ? { baseline, ratio: { median: value.median / baseline.value.median, p99: value.p99 / baseline.value.p99 } } : {}),
  };
}

export function rateRow(label: string, value: Dist, baseline?: { label: string; value: Dist }): Row {
  return {
    label,
    unit: "entries/s",
    value,
    ...(baseline ? { baseline, ratio: { median: value.median / baseline.value.median } } : {}),
  };
}

export function fmt(value: number, unit: Row["unit"]): string {
  if (!Number.isFinite(value)) return "–";
  switch (unit) {
    case "ms":
      return value < 10 ? value.toFixed(2) : value < 100 ? value.toFixed(1) : value.toFixed(0);
    case "entries/s":
      return Math.round(value).toLocaleString("en-US");
    case "MB":
    case "s":
      return value.toFixed(1);
    case "connections":
      return String(Math.round(value));
  }
}

export function x(ratio: number): string {
  return Number.isFinite(ratio) ? `${ratio.toFixed(2)}×` : "–";
}

/** A line for the scenario's own console output. */
export function describeRow(row: Row): string {
  const v = row.value;
  const u = row.unit;
  let line = `${row.label}: min ${fmt(v.min, u)} / median ${fmt(v.median, u)} / p99 ${fmt(v.p99, u)} ${u} (n=${v.n})`;
  if (row.baseline) {
    const b = row.baseline.value;
    line += `\n    baseline ${row.baseline.label}: min ${fmt(b.min, u)} / median ${fmt(b.median, u)} / p99 ${fmt(b.p99, u)} ${u}`;
    line += `\n    ratio: median ${x(row.ratio!.median)}${row.ratio!.p99 !== undefined ? `, p99 ${x(row.ratio!.p99)}` : ""}`;
  }
  return line;
}

// ------------------------------------------------------------------------------- timing

/**
 * Calls `send(i)` for i in [0, count) at `rate` per second, on a schedule fixed at the
 * start (a late send does not push the later ones back). Timers have ~1 ms resolution;
 * callers record the actual send time, so jitter here does not skew a latency.
 */
export async function paced(rate: number, count: number, send: (i: number) => void): Promise<void> {
  const interval = 1000 / rate;
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const wait = t0 + i * interval - performance.now();
    if (wait >= 1) await sleep(wait);
    else if (i % 16 === 0) await new Promise((resolve) => setImmediate(resolve)); // behind: still let I/O in
    send(i);
  }
}

/** Resolves when `count()` reaches `n`, checking on every `tick` ms; rejects after `ms`. */
export async function until(what: string, ms: number, done: () => boolean, tick = 5): Promise<void> {
  const deadline = performance.now() + ms;
  while (!done()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(tick);
  }
}

export function heapMB(): number {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) {
    g();
    g();
  }
  return process.memoryUsage().heapUsed / (1024 * 1024);
}

export function suffix(): string {
  return randomBytes(3).toString("hex");
}

// --------------------------------------------------------------------------- raw baselines

/** A plain postgres.js instance, tagged in pg_stat_activity, never touching pgtide code. */
export function rawSql(url: string, schema: string, max = 1, tag = "raw", onnotice: (notice: postgres.Notice) => void = () => {}): Sql {
  return postgres(url, {
    max,
    onnotice,
    idle_timeout: 0,
    connection: { search_path: schema, application_name: `pgtide-bench:${schema}:${tag}` },
    types: { int8: { to: 20, from: [20], serialize: (n: number) => String(n), parse: (s: string) => Number(s) } },
  });
}

/** The NOTIFY channel of a raw table (distinct from pgtide's `pgtide.<schema>`). */
export function rawChannel(schema: string, table: string): string {
  return `raw.${schema}.${table}`;
}

/**
 * A table of the same shape as pgtide's stream_entries (same columns, same primary key);
 * with `notify`, a row trigger that sends `workflow_id/offset` on the raw channel.
 */
export async function createRawTable(sql: Sql, schema: string, table: string, notify: boolean): Promise<void> {
  await sql.unsafe(`
    create table "${schema}"."${table}" (
      workflow_id text not null,
      key text not null,
      "offset" bigint not null,
      value jsonb,
      closed boolean not null default false,
      primary key (workflow_id, key, "offset")
    )`);
  if (!notify) return;
  await sql.unsafe(`
    create function "${schema}"."${table}_notify"() returns trigger language plpgsql as $$
    begin
      perform pg_notify('${rawChannel(schema, table)}', new.workflow_id || '/' || new."offset");
      return null;
    end $$`);
  await sql.unsafe(`
    create trigger "${table}_notify" after insert on "${schema}"."${table}"
    for each row execute function "${schema}"."${table}_notify"()`);
}

export interface FloorOptions {
  url: string;
  schema: string;
  /** Created here, with its NOTIFY trigger. */
  table: string;
  rate: number;
  /** Measured writes; `warmup` more go first and are not counted. */
  count: number;
  warmup: number;
  /** Writes are spread over this many streams (stream i % streams). @default 1 */
  streams?: number;
  /** Stream of write i. @default i % streams */
  pick?: (i: number) => number;
  timeoutMs: number;
}

export interface LatencySample {
  /** Latency of measured write i, ms. */
  latency: Float64Array;
  /** When write i was sent, ms since the first measured send. */
  sentAt: Float64Array;
}

/**
 * The raw floor of write → read latency: postgres.js INSERT into a same-shape table whose
 * trigger NOTIFYs, a `sql.listen` callback, then a SELECT of the new row. One writer
 * connection (writes in commit order, like pgtide's one batch in flight), one reader.
 */
export async function rawFloor(o: FloorOptions): Promise<LatencySample> {
  const writer = rawSql(o.url, o.schema, 1, "raw-writer");
  const reader = rawSql(o.url, o.schema, 1, "raw-reader");
  try {
    await createRawTable(writer, o.schema, o.table, true);
    const total = o.warmup + o.count;
    const streams = o.streams ?? 1;
    const pick = o.pick ?? ((i: number) => i % streams);
    const sent = new Float64Array(total);
    const latency = new Float64Array(o.count).fill(NaN);
    /** indexOf[stream][offset] = the write's global index i. */
    const indexOf: number[][] = Array.from({ length: streams }, () => []);
    let received = 0;
    let failed: unknown;
    const table = o.table;
    await reader.listen(rawChannel(o.schema, table), (payload) => {
      const slash = payload.lastIndexOf("/");
      const w = payload.slice(0, slash);
      const offset = Number(payload.slice(slash + 1));
      const i = indexOf[Number(w.slice(1))]![offset]!; // workflow ids are "s<stream>"
      reader`select value from ${reader(table)} where workflow_id = ${w} and key = 'k' and "offset" = ${offset}`.then(
        (rows) => {
          if (rows.length !== 1) failed ??= new Error(`raw floor: row ${payload} not found`);
          if (i >= o.warmup) latency[i - o.warmup] = performance.now() - sent[i]!;
          received++;
        },
        (error) => (failed ??= error),
      );
    });
    const writes: Promise<unknown>[] = [];
    await paced(o.rate, total, (i) => {
      const s = pick(i);
      const offset = indexOf[s]!.length; // offsets count per stream, as pgtide assigns them
      indexOf[s]!.push(i);
      sent[i] = performance.now();
      writes.push(writer`insert into ${writer(table)} values (${"s" + s}, 'k', ${offset}, ${'"tok"'}::jsonb, false)`.execute());
    });
    await within(o.timeoutMs, "raw writes", Promise.all(writes));
    await until("raw floor reads", o.timeoutMs, () => received >= total || failed !== undefined);
    if (failed) throw failed;
    const t0 = sent[o.warmup] ?? 0;
    return { latency, sentAt: sent.slice(o.warmup).map((t) => t - t0) };
  } finally {
    await Promise.allSettled([writer.end({ timeout: 1 }), reader.end({ timeout: 1 })]);
  }
}
