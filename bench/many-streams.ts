// Scenario 4: many streams. 10,000 streams (one workflow each) with one reader each on a
// second Engine; writes spread at random over them at a steady rate. Measured: latency,
// and whether it grows over the run (a listener or reader falling behind shows as a
// rising latency and a long drain after the last write). Baseline: the raw floor with
// the same streams, rate and sequence of picks.
import type { Engine } from "../src/index.js";
import { openEngine } from "./probes.js";
import { dist, gate, latencyRow, paced, rawFloor, until, within, type Scenario } from "./support.js";

interface Box {
  write?: (i: number) => void;
  end: { promise: Promise<void>; open: () => void };
}

/** A fixed pseudo-random sequence (mulberry32), so pgtide and the floor get the same picks. */
function picker(streams: number, seed = 42): (i: number) => number {
  const picks: number[] = [];
  let a = seed;
  return (i) => {
    while (picks.length <= i) {
      a = (a + 0x6d2b79f5) | 0;
      let t = Math.imul(a ^ (a >>> 15), 1 | a);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      picks.push(Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * streams));
    }
    return picks[i]!;
  };
}

function windows(latency: Float64Array, parts: number): { median: number; p99: number }[] {
  const size = Math.ceil(latency.length / parts);
  return Array.from({ length: parts }, (_, k) => dist(latency.subarray(k * size, (k + 1) * size)));
}

export const manyStreams: Scenario = {
  id: "many-streams",
  title: "4. Many streams, 10,000 streams × 1 reader",
  timeout: { quick: 45, full: 150 },
  async run(ctx) {
    const started = performance.now();
    const streams = ctx.quick ? 2000 : 10_000;
    const rate = 1000;
    const count = rate * (ctx.quick ? 4 : 12);
    const pick = picker(streams);

    const floor = await rawFloor({ url: ctx.url, schema: ctx.schema, table: "floor", rate, count, warmup: 200, streams, pick: (i) => pick(i + 7919), timeoutMs: 60_000 });

    const writer: Engine = await openEngine(ctx);
    const reader: Engine = await openEngine(ctx);
    const boxes = new Map<string, Box>();
    const sent = new Float64Array(count);
    const latency = new Float64Array(count).fill(NaN);
    /** indexOf[stream][offset - 1] = global write index (entry 0 is each stream's warm-up). */
    const indexOf: number[][] = Array.from({ length: streams }, () => []);
    const stop = new AbortController();
    let lastDelivery = 0;
    let lastSend = 0;
    try {
      const wf = writer.workflow("bench_many", async (wctx) => {
        const box = boxes.get(wctx.workflowId)!;
        await wctx.writeStream("s", "warm-up");
        const pending: Promise<void>[] = [];
        box.write = (i) => pending.push(wctx.writeStream("s", i));
        await box.end.promise;
        await Promise.all(pending);
      });
      const ids = Array.from({ length: streams }, (_, s) => `m${s}`);
      for (const id of ids) boxes.set(id, { end: gate() });
      await within(60_000, "starting the workflows", Promise.all(ids.map((workflowId) => wf.start(undefined, { workflowId }))));
      let warmed = 0;
      let delivered = 0;
      const readers = ids.map(async (id, s) => {
        try {
          for await (const entry of reader.readStreamEntries(id, "s", { signal: stop.signal })) {
            const now = performance.now();
            if (entry.offset === 0) {
              warmed++;
              continue;
            }
            const i = indexOf[s]![entry.offset - 1]!;
            latency[i] = now - sent[i]!;
            lastDelivery = now;
            delivered++;
          }
        } catch (error) {
          if (!stop.signal.aborted) throw error;
        }
      });
      const failed = Promise.all(readers); // surfaces a reader's error while we wait
      await within(60_000, "every reader to have its warm-up entry", Promise.race([until("warm-up", 60_000, () => warmed === streams), failed]));
      await until("every workflow to be ready", 30_000, () => ids.every((id) => boxes.get(id)!.write));
      ctx.log(`${streams} streams, ${streams} readers ready`);
      await paced(rate, count, (i) => {
        const s = pick(i + 7919);
        indexOf[s]!.push(i);
        sent[i] = performance.now();
        boxes.get(ids[s]!)!.write!(i);
      });
      lastSend = performance.now();
      await within(60_000, "every entry delivered", Promise.race([until("deliveries", 60_000, () => delivered === count), failed]));
      stop.abort();
      await failed;
    } finally {
      stop.abort();
      // Close first: the workflows are then abandoned (left PENDING in a schema about to
      // be dropped) instead of 10,000 finishing transactions.
      await Promise.allSettled([writer.close(), reader.close()]);
      for (const box of boxes.values()) box.end.open();
    }
    const row = latencyRow(`pgtide, ${streams.toLocaleString("en-US")} streams, ${rate}/s spread`, dist(latency), {
      label: "raw floor, same streams and picks", value: dist(floor.latency),
    });
    const ours = windows(latency, 5);
    const theirs = windows(floor.latency, 5);
    const growth = ours[4]!.median / ours[0]!.median;
    const drain = lastDelivery - lastSend;
    const show = (w: { median: number; p99: number }[]) => w.map((d) => `${d.median.toFixed(1)}/${d.p99.toFixed(1)}`).join(", ");
    return {
      id: this.id,
      title: this.title,
      what: `${streams.toLocaleString("en-US")} workflows each own one stream, each followed by one reader on a second Engine; ${count.toLocaleString("en-US")} writes at ${rate}/s go to streams picked at random (the same sequence for the floor). ` +
        "Backlog: the run is cut in 5 equal windows; a listener or reader falling behind would show as latency rising from window to window and a long drain after the last write.",
      rows: [
        row,
        { label: "drain: last delivery after the last write", unit: "ms", value: { n: 1, min: drain, median: drain, p99: drain, max: drain } },
      ],
      targets: [
        {
          text: "no growing backlog (last-window p50 ≤ 2× first-window p50, drain ≤ 100 ms)",
          measured: `${x2(growth)}, drain ${drain.toFixed(0)} ms`,
          ok: growth <= 2 && drain <= 100,
        },
      ],
      notes: [
        `pgtide median/p99 per window (ms): ${show(ours)}`,
        `raw floor median/p99 per window (ms): ${show(theirs)}`,
      ],
      seconds: (performance.now() - started) / 1000,
    };
  },
};

function x2(r: number): string {
  return `last/first window p50 ${r.toFixed(2)}×`;
}
