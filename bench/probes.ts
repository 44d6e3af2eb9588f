// The pgtide side of the measurements that more than one scenario runs: write → read
// latency at a fixed rate, and append throughput of many workflows writing back to back.
// Only the public API is used, so what is measured is what a user gets.
import type { Engine, EngineOptions } from "../src/index.js";
import { pgtide } from "./pgtide.js";
import {
  gate, paced, rawSql, suffix, until, within, type LatencySample, type ScenarioContext,
} from "./support.js";

export async function openEngine(ctx: ScenarioContext, options: EngineOptions = {}): Promise<Engine> {
  const engine = await pgtide.Engine.open({ databaseUrl: ctx.url, schema: ctx.schema, ...options });
  engine.on("error", (error) => ctx.log(`engine error: ${String(error)}`));
  return engine;
}

/** Send times of each latency run, by workflow id (workflow code runs in this process). */
const sendTimes = new Map<string, Float64Array>();
/** Workflow names registered per engine (a name is registered once per engine). */
const latencyWorkflows = new WeakMap<Engine, ReturnType<typeof registerLatency>>();

function registerLatency(engine: Engine) {
  return engine.workflow<{ rate: number; total: number }, void>("bench_latency", async (ctx, input) => {
    const sent = sendTimes.get(ctx.workflowId)!;
    const writes: Promise<void>[] = [];
    await paced(input.rate, input.total, (i) => {
      sent[i] = performance.now();
      writes.push(ctx.writeStream("tokens", "tok"));
    });
    await Promise.all(writes);
  });
}

export interface ProbeOptions {
  writer: Engine;
  /** Another engine on the same schema: the reader goes through its listener. */
  reader: Engine;
  rate: number;
  count: number;
  warmup: number;
  timeoutMs: number;
  /**
   * How the reader follows the stream, calling `got(offset)` for each entry until it has
   * `total`. @default the reader Engine's readStreamEntries (through its listener)
   */
  follow?: (workflowId: string, total: number, got: (offset: number) => void) => Promise<void>;
}

/**
 * One workflow writes `warmup + count` tokens at `rate` (not awaiting each write, as the
 * raw floor's writer does not); one reader on the other engine follows the stream.
 * Latency = reader has the entry − writeStream was called.
 */
export async function pgtideLatency(o: ProbeOptions): Promise<LatencySample> {
  let wf = latencyWorkflows.get(o.writer);
  if (!wf) latencyWorkflows.set(o.writer, (wf = registerLatency(o.writer)));
  const total = o.warmup + o.count;
  const workflowId = `latency-${suffix()}`;
  const sent = new Float64Array(total);
  sendTimes.set(workflowId, sent);
  const latency = new Float64Array(o.count).fill(NaN);
  try {
    const handle = await wf.start({ rate: o.rate, total }, { workflowId });
    let n = 0;
    const got = (offset: number) => {
      const now = performance.now();
      if (offset >= o.warmup) latency[offset - o.warmup] = now - sent[offset]!;
      n++;
    };
    const follow = o.follow ?? (async (id: string) => {
      for await (const entry of o.reader.readStreamEntries(id, "tokens")) got(entry.offset);
    });
    const reading = follow(workflowId, total, got).then(() => {
      if (n !== total) throw new Error(`reader got ${n} entries, expected ${total}`);
    });
    await within(o.timeoutMs, "pgtide latency reader", reading);
    await within(o.timeoutMs, "pgtide latency workflow", handle.getResult());
    const t0 = sent[o.warmup] ?? 0;
    return { latency, sentAt: sent.slice(o.warmup).map((t) => t - t0) };
  } finally {
    sendTimes.delete(workflowId);
  }
}

// -------------------------------------------------------------------------------- throughput

export interface ThroughputResult {
  /** Entries appended per second, from the gate opening to the last write acknowledged. */
  appendRate: number;
  /** Entries per second until every reader had every entry and the close. */
  deliverRate: number;
  /** Each write's wait for its commit, ms. */
  ackLatency: Float64Array;
  /** This process's CPU (writer and reader engines, workflow code) per entry, µs. */
  cpuPerEntry: number;
}

interface Run {
  go: Promise<void>;
  perWorkflow: number;
  ack: Float64Array;
  lastAck: number;
}
const runs = new Map<string, Run>();
const throughputWorkflows = new WeakMap<Engine, ReturnType<typeof registerThroughput>>();

function registerThroughput(engine: Engine) {
  return engine.workflow<{ run: string; index: number }, void>("bench_throughput", async (ctx, input) => {
    const run = runs.get(input.run)!;
    await run.go;
    const base = input.index * run.perWorkflow;
    for (let i = 0; i < run.perWorkflow; i++) {
      const t = performance.now();
      await ctx.writeStream("tokens", "tok");
      const now = performance.now();
      run.ack[base + i] = now - t;
      if (now > run.lastAck) run.lastAck = now;
    }
  });
}

/**
 * LLM-style: `workflows` workflows each await `perWorkflow` small writes back to back,
 * while one reader per stream (on the reader engine) follows it to its close.
 */
export async function pgtideThroughput(o: {
  writer: Engine;
  reader: Engine;
  workflows: number;
  perWorkflow: number;
  timeoutMs: number;
  /** One reader per stream on the reader engine. @default true */
  readers?: boolean;
}): Promise<ThroughputResult> {
  const follow = o.readers ?? true;
  let wf = throughputWorkflows.get(o.writer);
  if (!wf) throughputWorkflows.set(o.writer, (wf = registerThroughput(o.writer)));
  const id = suffix();
  const go = gate();
  const run: Run = { go: go.promise, perWorkflow: o.perWorkflow, ack: new Float64Array(o.workflows * o.perWorkflow), lastAck: 0 };
  runs.set(id, run);
  try {
    const handles = await Promise.all(
      Array.from({ length: o.workflows }, (_, index) => wf.start({ run: id, index }, { workflowId: `tp-${id}-${index}` })),
    );
    let delivered = 0;
    const readers = !follow ? [] : handles.map(async (h) => {
      for await (const _ of o.reader.readStreamEntries(h.workflowId, "tokens")) delivered++;
    });
    // Every reader is registered with its feed before the clock starts.
    if (follow) await until("readers to register", o.timeoutMs, () => o.reader.readerCount >= o.workflows, 1);
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    go.open();
    await within(o.timeoutMs, "throughput readers", Promise.all(readers));
    const tDelivered = performance.now();
    const cpu = process.cpuUsage(cpu0);
    await within(o.timeoutMs, "throughput workflows", Promise.all(handles.map((h) => h.getResult())));
    const total = o.workflows * o.perWorkflow;
    if (follow && delivered !== total) throw new Error(`readers got ${delivered} entries, expected ${total}`);
    return {
      appendRate: total / ((run.lastAck - t0) / 1000),
      deliverRate: total / ((tDelivered - t0) / 1000),
      ackLatency: run.ack,
      cpuPerEntry: (cpu.user + cpu.system) / (o.workflows * o.perWorkflow),
    };
  } finally {
    runs.delete(id);
  }
}

/**
 * The ceiling without NOTIFY: one connection, `total` rows as multi-row INSERTs of
 * `batch` rows (one transaction each), into a same-shape table with no trigger.
 */
export async function rawCeiling(o: { url: string; schema: string; table: string; total: number; batch: number; streams: number }): Promise<number> {
  return (await rawCeilingRun(o)).rate;
}

export async function rawCeilingRun(o: { url: string; schema: string; table: string; total: number; batch: number; streams: number }): Promise<{ rate: number; cpuPerEntry: number }> {
  const sql = rawSql(o.url, o.schema, 1, "raw-ceiling");
  try {
    const rows = Array.from({ length: o.batch }, (_, i) => ({ workflow_id: `c${i % o.streams}`, key: "tokens", offset: 0, value: "tok", closed: false }));
    const batches = Math.ceil(o.total / o.batch);
    await sql`select 1`; // connected before the clock starts
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    for (let b = 0; b < batches; b++) {
      for (const row of rows) row.offset = b;
      await sql`insert into ${sql(o.table)} ${sql(rows, "workflow_id", "key", "offset", "value", "closed")}`;
    }
    const cpu = process.cpuUsage(cpu0);
    const n = batches * o.batch;
    return { rate: n / ((performance.now() - t0) / 1000), cpuPerEntry: (cpu.user + cpu.system) / n };
  } finally {
    await sql.end({ timeout: 1 });
  }
}
