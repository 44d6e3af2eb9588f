// Scenario 1: write → read latency at 500 entries/s, one workflow writing, one reader on
// a second Engine (so every entry goes through that engine's listener), against the raw
// floor: INSERT + row trigger NOTIFY + sql.listen callback + SELECT of the new row.
// Rounds alternate floor / pgtide so that drift in machine load hits both alike.
import { openEngine, pgtideLatency } from "./probes.js";
import { dist, latencyRow, rawFloor, x, type Scenario } from "./support.js";

const RATE = 500;

export const latency: Scenario = {
  id: "latency",
  title: "1. Write → read latency at 500 entries/s",
  timeout: { quick: 30, full: 120 },
  async run(ctx) {
    const started = performance.now();
    const rounds = ctx.quick ? 2 : 4;
    const count = ctx.quick ? 500 : 1500;
    const warmup = 100;
    const writer = await openEngine(ctx);
    const reader = await openEngine(ctx);
    const floor: number[] = [];
    const ours: number[] = [];
    try {
      // A round not counted: JIT, prepared statements, first-use costs on both paths.
      await rawFloor({ url: ctx.url, schema: ctx.schema, table: "floor_warm", rate: RATE, count: 300, warmup: 0, timeoutMs: 30_000 });
      await pgtideLatency({ writer, reader, rate: RATE, count: 300, warmup: 0, timeoutMs: 30_000 });
      for (let round = 0; round < rounds; round++) {
        const raw = await rawFloor({ url: ctx.url, schema: ctx.schema, table: `floor_${round}`, rate: RATE, count, warmup, timeoutMs: 30_000 });
        floor.push(...raw.latency);
        const p = await pgtideLatency({ writer, reader, rate: RATE, count, warmup, timeoutMs: 30_000 });
        ours.push(...p.latency);
        ctx.log(`round ${round + 1}/${rounds}: floor median ${dist(raw.latency).median.toFixed(2)} ms, pgtide median ${dist(p.latency).median.toFixed(2)} ms`);
      }
    } finally {
      await Promise.allSettled([writer.close(), reader.close()]);
    }
    const row = latencyRow("pgtide write → read (reader on another Engine)", dist(ours), { label: "raw INSERT + NOTIFY + listen + SELECT", value: dist(floor) });
    return {
      id: this.id,
      title: this.title,
      what: `One workflow writes a short string token at ${RATE}/s (${rounds} × ${count} measured, ${warmup} warm-up writes each, after one uncounted round of 300 on each path); latency is from the writeStream call to the reader's iterator yielding the entry. The floor does the same with postgres.js alone, rounds alternating.`,
      rows: [row],
      targets: [
        { text: "p50 ≤ 1.3× the raw floor", measured: x(row.ratio!.median), ok: row.ratio!.median <= 1.3 },
        { text: "p99 ≤ 1.5× the raw floor", measured: x(row.ratio!.p99!), ok: row.ratio!.p99! <= 1.5 },
      ],
      notes: [],
      seconds: (performance.now() - started) / 1000,
    };
  },
};
