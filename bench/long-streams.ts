// Scenario 5: long streams. Write → read latency in one stream when it holds 1,000
// entries, then again in the same stream at 1,000,000 (filled by a direct multi-row
// INSERT, not through workflows); the plans of the hot queries at that size, taken
// with auto_explain from the very statements pgtide sends; and catch-up throughput
// reading the whole stream from offset 0, against one raw `SELECT … ORDER BY offset`.
//
// The same stream is written by two runs of one workflow: the row and its history are
// put in place by SQL, then Engine.launch() recovers the workflow, whose step re-reads
// the stream head before its first write (that is how a recovered run resumes), so its
// writes land at the end of the history. Between the two phases the engine is closed
// (the workflow stays PENDING), the history grown, and a new engine launched.
import { setTimeout as sleep } from "node:timers/promises";
import type { Engine } from "../src/index.js";
import { pageReads, writer as writerModule } from "./pgtide.js";
import { openEngine, pgtideLatency } from "./probes.js";
import {
  dist, fmt, gate, latencyRow, paced, rateRow, rawSql, within, x, type Scenario, type ScenarioContext, type Sql,
} from "./support.js";

const RATE = 500;
const WORKFLOW = "long";
const KEY = "tokens";

interface Phase {
  total: number;
  sent: Float64Array;
  done: ReturnType<typeof gate<void>>;
  hold: ReturnType<typeof gate<void>>;
}
let phase: Phase | undefined;

function register(engine: Engine): void {
  engine.workflow("bench_long", async (wctx) => {
    await wctx.step("write", async () => {
      const p = phase!;
      const pending: Promise<void>[] = [];
      await paced(RATE, p.total, (i) => {
        p.sent[i] = performance.now();
        pending.push(wctx.writeStream(KEY, "tok"));
      });
      await Promise.all(pending);
      p.done.open();
      await p.hold.promise; // until the engine is closed: the step never completes
    });
  });
}

/**
 * Appends entries [from, to) to the stream by SQL, in statements of 200,000 rows; then
 * does now what autovacuum (a vacuum and an analyze after that many inserts) and the
 * next checkpoint would otherwise do in the middle of the measurement that follows.
 */
async function fill(sql: Sql, from: number, to: number): Promise<void> {
  for (let a = from; a < to; a += 200_000) {
    const b = Math.min(to, a + 200_000) - 1;
    await sql`
      insert into stream_entries (workflow_id, key, "offset", value, closed)
      select ${WORKFLOW}, ${KEY}, g, '"tok"'::jsonb, false from generate_series(${a}::bigint, ${b}::bigint) g`;
  }
  await sql`vacuum (analyze) stream_entries`;
  await sql`checkpoint`.catch(() => {}); // needs superuser (or pg_checkpoint): best effort
}

/** One latency phase at the current head; returns the measured latencies. */
async function measure(ctx: ScenarioContext, reader: Engine, head: number, count: number, warmup: number): Promise<Float64Array> {
  const engine = await openEngine(ctx);
  register(engine);
  const total = warmup + count;
  const p: Phase = { total, sent: new Float64Array(total), done: gate(), hold: gate() };
  phase = p;
  const latency = new Float64Array(count).fill(NaN);
  try {
    const reading = (async () => {
      let n = 0;
      for await (const entry of reader.readStreamEntries(WORKFLOW, KEY, { fromOffset: head })) {
        const now = performance.now();
        const i = entry.offset - head;
        if (i >= warmup) latency[i - warmup] = now - p.sent[i]!;
        if (++n === total) break;
      }
    })();
    await engine.launch();
    await within(60_000, "long-stream reader", reading);
    await within(30_000, "long-stream writes", p.done.promise);
  } finally {
    await engine.close();
    p.hold.open(); // the step resumes, finds its engine closed, and the run is abandoned
  }
  return latency;
}

/** auto_explain's plans of pgtide's own read and append statements, at the current head. */
async function plans(ctx: ScenarioContext, head: number): Promise<{ summary: string[]; ok: boolean; detail: string }> {
  const captured: string[] = [];
  // auto_explain reports each plan as a NOTICE on the session that ran the statement.
  const notices = rawSql(ctx.url, ctx.schema, 1, "explain", (n) => {
    if (String(n.message).includes("plan:")) captured.push(String(n.message));
  });
  try {
    await notices`load 'auto_explain'`;
    await notices.unsafe(`set auto_explain.log_min_duration = 0; set auto_explain.log_analyze = on;
      set auto_explain.log_buffers = on; set auto_explain.log_level = notice; set client_min_messages = notice`);
    // Eight runs: a prepared statement may switch to a generic plan after five.
    for (let k = 0; k < 8; k++) await pageReads.readPage(notices, WORKFLOW, KEY, head - 10 - k, 2000);
    const reads = captured.splice(0);
    const writer = new writerModule.StreamWriter(notices, 10_000, async () => new Error("refused"));
    const append = (offset: number) => writer.append({ workflowId: WORKFLOW, key: KEY, offset, json: '"tok"', closed: false, writeSeq: null });
    await Promise.all([append(head), append(head + 1), append(head + 2)]); // one batch of three
    await append(head + 3); // a batch of one (its own statement)
    const appends = captured.splice(0).filter((p) => /insert into stream_entries/i.test(p));
    const lastRead = reads.at(-1) ?? "";
    const lastAppend = appends.at(-1) ?? "";
    const scans = (plan: string) => /Seq Scan on stream_entries/.test(plan);
    const sorts = (plan: string) => /\bSort\b/.test(plan);
    const buffers = (plan: string) => {
      const m = /Buffers: shared hit=(\d+)(?: read=(\d+))?/.exec(plan);
      return m ? Number(m[1]) + Number(m[2] ?? 0) : NaN;
    };
    const readOk = reads.length > 0 && reads.every((p) => !scans(p) && !sorts(p) && /Index Scan using stream_entries_workflow_id_key_offset_pk/.test(p));
    const appendOk = appends.length > 0 && appends.every((p) => !scans(p));
    return {
      ok: readOk && appendOk,
      summary: [
        `readPage at offset ${head.toLocaleString("en-US")} (${reads.length} runs): ${readOk ? "primary-key index range scan, no Sort, no Seq Scan" : "UNEXPECTED PLAN (see the console log)"}; ${buffers(lastRead)} buffers, ${/actual time=[\d.]+\.\.([\d.]+)/.exec(lastRead)?.[1] ?? "?"} ms in the last run`,
        `writer inserts at offset ${head.toLocaleString("en-US")} (a batch of 3 and a batch of 1): ${appendOk ? "no Seq Scan on stream_entries" : "UNEXPECTED PLAN"}; ${buffers(lastAppend)} buffers`,
      ],
      detail: `--- readPage plan (last of ${reads.length}) ---\n${lastRead}\n--- writer insert plan ---\n${lastAppend}`,
    };
  } finally {
    await notices.end({ timeout: 1 });
  }
}

export const longStreams: Scenario = {
  id: "long-streams",
  title: "5. Long streams, 1,000 vs 1,000,000 entries",
  timeout: { quick: 45, full: 180 },
  async run(ctx) {
    const started = performance.now();
    const big = ctx.quick ? 100_000 : 1_000_000;
    const count = ctx.quick ? 500 : 2000;
    const warmup = 200;
    const admin = rawSql(ctx.url, ctx.schema, 1, "admin");
    const reader = await openEngine(ctx); // opening it migrates the schema
    const notes: string[] = [];
    let short: Float64Array;
    let long: Float64Array;
    let planCheck: Awaited<ReturnType<typeof plans>>;
    const oursRates: number[] = [];
    const rawRates: number[] = [];
    try {
      await admin`
        insert into workflow_status (workflow_id, name, status, executor_id)
        values (${WORKFLOW}, 'bench_long', 'PENDING', 'local')`;
      // Not counted: JIT and first-use costs, which would otherwise all land on the
      // 1,000-entry phase (it runs first).
      const warm = await openEngine(ctx);
      try {
        await pgtideLatency({ writer: warm, reader, rate: RATE, count: 300, warmup: 0, timeoutMs: 30_000 });
      } finally {
        await warm.close();
      }
      await fill(admin, 0, 1000);
      short = await measure(ctx, reader, 1000, count, warmup);
      let head = 1000 + warmup + count;
      const t = performance.now();
      await fill(admin, head, big);
      ctx.log(`filled to ${big.toLocaleString("en-US")} entries in ${((performance.now() - t) / 1000).toFixed(1)} s`);
      long = await measure(ctx, reader, big, count, warmup);
      head = big + warmup + count;
      planCheck = await plans(ctx, head);
      ctx.log(planCheck.detail.replace(/\n/g, "\n      "));
      head += 4;

      // Catch-up: the whole stream from offset 0; rounds alternate raw / pgtide.
      for (let round = 0; round < 2; round++) {
        let t0 = performance.now();
        const rows = await admin`
          select "offset", value from stream_entries
          where workflow_id = ${WORKFLOW} and key = ${KEY} order by "offset"`;
        rawRates.push(rows.length / ((performance.now() - t0) / 1000));
        if (rows.length !== head) throw new Error(`raw select got ${rows.length} rows, expected ${head}`);
        await sleep(0);
        t0 = performance.now();
        let n = 0;
        for await (const entry of reader.readStreamEntries(WORKFLOW, KEY)) {
          n++;
          if (entry.offset === head - 1) break;
        }
        oursRates.push(n / ((performance.now() - t0) / 1000));
        if (n !== head) throw new Error(`catch-up got ${n} entries, expected ${head}`);
        ctx.log(`catch-up round ${round + 1}: raw ${fmt(rawRates.at(-1)!, "entries/s")}/s, pgtide ${fmt(oursRates.at(-1)!, "entries/s")}/s`);
      }
    } finally {
      await Promise.allSettled([reader.close(), admin.end({ timeout: 1 })]);
    }
    const latencyAtBig = latencyRow(`pgtide write → read, stream at ${big.toLocaleString("en-US")} entries`, dist(long), {
      label: "same stream at 1,000 entries", value: dist(short),
    });
    const catchUp = rateRow(`pgtide catch-up from offset 0 (${big.toLocaleString("en-US")} entries)`, dist(oursRates), {
      label: "one raw SELECT … ORDER BY offset", value: dist(rawRates),
    });
    notes.push(...planCheck.summary);
    return {
      id: this.id,
      title: this.title,
      what: `One stream: latency at ${RATE}/s (${count} measured after ${warmup} warm-up writes) when it holds 1,000 entries, then after a direct INSERT … generate_series grew it to ${big.toLocaleString("en-US")} (then VACUUM (ANALYZE) and CHECKPOINT, so that autovacuum and the checkpointer do not run during the measurement). ` +
        "Plans are auto_explain's (ANALYZE, BUFFERS) for the statements pgtide itself sends, prepared, eight reads so that a switch to a generic plan would show. " +
        "Catch-up: a reader iterating the whole stream from offset 0 (pages of 2,000) vs one raw postgres.js SELECT of the same rows; two rounds each, alternating.",
      rows: [latencyAtBig, catchUp],
      targets: [
        { text: `latency at ${big.toLocaleString("en-US")} entries within 1.2× of at 1,000 (p50)`, measured: x(latencyAtBig.ratio!.median), ok: latencyAtBig.ratio!.median <= 1.2 },
        { text: "no query scans the stream's history (plans at the big head)", measured: planCheck.ok ? "index range scans only" : "see notes", ok: planCheck.ok },
        { text: "catch-up ≥ 50% of a raw SELECT … ORDER BY offset", measured: `${(catchUp.ratio!.median * 100).toFixed(0)}%`, ok: catchUp.ratio!.median >= 0.5 },
      ],
      notes,
      seconds: (performance.now() - started) / 1000,
    };
  },
};
