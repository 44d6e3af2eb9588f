// Scenario 2: append throughput under concurrency, LLM-style: 100 workflows each await
// 1,000 small token writes back to back, one reader per stream following it (on a second
// Engine). Ceiling, same run: multi-row INSERTs of 100 rows per transaction into a
// same-shape table with no trigger at all. Repetitions alternate ceiling / pgtide.
import { openEngine, pgtideThroughput, rawCeiling, rawCeilingRun } from "./probes.js";
import { createRawTable, dist, fmt, latencyRow, rateRow, rawSql, x, type Scenario } from "./support.js";

export const throughput: Scenario = {
  id: "throughput",
  title: "2. Append throughput, 100 workflows × 1,000 tokens",
  timeout: { quick: 30, full: 150 },
  async run(ctx) {
    const started = performance.now();
    const workflows = 100;
    const perWorkflow = ctx.quick ? 200 : 1000;
    const reps = ctx.quick ? 1 : 3;
    const total = workflows * perWorkflow;
    const writer = await openEngine(ctx);
    const reader = await openEngine(ctx);
    const admin = rawSql(ctx.url, ctx.schema, 1, "admin");
    const ceiling: number[] = [];
    const append: number[] = [];
    const deliver: number[] = [];
    const acks: Float64Array[] = [];
    const cpu: number[] = [];
    const ceilingCpu: number[] = [];
    try {
      // Not counted: JIT and first-use costs on both paths.
      await createRawTable(admin, ctx.schema, "ceiling_warm", false);
      await rawCeiling({ url: ctx.url, schema: ctx.schema, table: "ceiling_warm", total: 5000, batch: 100, streams: 100 });
      await pgtideThroughput({ writer, reader, workflows, perWorkflow: 20, timeoutMs: 30_000 });
      for (let rep = 0; rep < reps; rep++) {
        await createRawTable(admin, ctx.schema, `ceiling_${rep}`, false);
        const c = await rawCeilingRun({ url: ctx.url, schema: ctx.schema, table: `ceiling_${rep}`, total, batch: 100, streams: 100 });
        ceiling.push(c.rate);
        ceilingCpu.push(c.cpuPerEntry);
        const r = await pgtideThroughput({ writer, reader, workflows, perWorkflow, timeoutMs: 60_000 });
        cpu.push(r.cpuPerEntry);
        append.push(r.appendRate);
        deliver.push(r.deliverRate);
        acks.push(r.ackLatency);
        ctx.log(`rep ${rep + 1}/${reps}: ceiling ${fmt(ceiling.at(-1)!, "entries/s")}/s, pgtide append ${fmt(r.appendRate, "entries/s")}/s, delivered ${fmt(r.deliverRate, "entries/s")}/s`);
      }
    } finally {
      await Promise.allSettled([writer.close(), reader.close(), admin.end({ timeout: 1 })]);
    }
    const base = { label: "multi-row INSERT, 100 rows/transaction, no trigger", value: dist(ceiling) };
    const appendRow = rateRow("pgtide append (all writes acknowledged)", dist(append), base);
    const deliverRow = rateRow("pgtide delivered (every reader had every entry)", dist(deliver), base);
    const ackAll = new Float64Array(acks.reduce((n, a) => n + a.length, 0));
    acks.reduce((at, a) => (ackAll.set(a, at), at + a.length), 0);
    return {
      id: this.id,
      title: this.title,
      what: `${workflows} workflows each await ${perWorkflow.toLocaleString("en-US")} writes of a short string, back to back; a reader per stream (on a second Engine) follows each to its close. ` +
        `Rates are entries per second from the moment the workflows are released (readers already registered); min/median/p99 over ${reps} repetition(s), each against its own ceiling run of ${total.toLocaleString("en-US")} rows on one connection.`,
      rows: [appendRow, deliverRow, latencyRow("a write's wait for its commit (ack)", dist(ackAll))],
      targets: [
        { text: "append ≥ 50,000 entries/s", measured: `${fmt(appendRow.value.median, "entries/s")}/s`, ok: appendRow.value.median >= 50_000 },
        { text: "append ≥ 70% of the no-NOTIFY ceiling", measured: `${(appendRow.ratio!.median * 100).toFixed(0)}% (${x(appendRow.ratio!.median)})`, ok: appendRow.ratio!.median >= 0.7 },
      ],
      notes: [
        `This process's CPU per entry (median of repetitions): pgtide ${dist(cpu).median.toFixed(1)} µs (workflow code, writer, listener and readers of both engines), ceiling ${dist(ceilingCpu).median.toFixed(1)} µs (building and sending the INSERTs). Postgres's own CPU is not in these figures.`,
      ],
      seconds: (performance.now() - started) / 1000,
    };
  },
};
