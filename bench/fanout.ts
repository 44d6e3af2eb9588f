// Scenario 3: fan-out. 10,000 readers of one stream in one process (one Engine, which
// also runs the writing workflow), 200 writes at 50/s. Measured: each reader's latency
// for each entry, the engine's connections in pg_stat_activity while it runs, and the
// heap taken by 10,000 idle readers. Baseline: the raw floor (one listen + SELECT reader)
// at the same rate, same run.
import { setTimeout as sleep } from "node:timers/promises";
import type { Engine } from "../src/index.js";
import { openEngine } from "./probes.js";
import {
  dist, gate, heapMB, latencyRow, paced, rawFloor, rawSql, single, until, within, type Scenario,
} from "./support.js";

const RATE = 50;

export const fanout: Scenario = {
  id: "fanout",
  title: "3. Fan-out, 10,000 readers of one stream",
  timeout: { quick: 40, full: 120 },
  async run(ctx) {
    const started = performance.now();
    const readers = 10_000;
    const writes = ctx.quick ? 50 : 200;
    const warmup = 1; // entry 0 proves every reader is registered and idle
    const total = warmup + writes;
    const floor = await rawFloor({ url: ctx.url, schema: ctx.schema, table: "floor", rate: RATE, count: writes, warmup: 10, timeoutMs: 30_000 });

    const engine: Engine = await openEngine(ctx);
    const admin = rawSql(ctx.url, ctx.schema, 1, "admin");
    const latency = new Float64Array(readers * writes).fill(NaN);
    const sent = new Float64Array(total);
    const release = gate();
    const first = gate();
    const connectionSamples: number[] = [];
    let heapIdle = NaN;
    let cpuPerDelivery = NaN;
    try {
      const wf = engine.workflow("bench_fanout", async (wctx) => {
        sent[0] = performance.now();
        await wctx.writeStream("tokens", 0);
        await release.promise;
        const pending: Promise<void>[] = [];
        await paced(RATE, writes, (i) => {
          sent[i + warmup] = performance.now();
          pending.push(wctx.writeStream("tokens", i + warmup));
        });
        await Promise.all(pending);
      });
      const handle = await wf.start(undefined, { workflowId: "fanout" });
      // Warm the read path once, so the heap figure is the readers, not first-use code.
      for await (const _ of engine.readStreamEntries("fanout", "tokens")) break;

      const heapBefore = heapMB();
      let gotFirst = 0;
      let done = 0;
      const all = Array.from({ length: readers }, async (_, r) => {
        const base = r * writes;
        for await (const entry of engine.readStreamEntries("fanout", "tokens")) {
          const now = performance.now();
          if (entry.offset >= warmup) latency[base + entry.offset - warmup] = now - sent[entry.offset]!;
          else if (++gotFirst === readers) first.open();
        }
        done++;
      });
      await within(30_000, "every reader to have entry 0", first.promise);
      // Let their (shared) read of entry 1 come back empty, so they are parked on the
      // feed: a pause for a measurement, not a synchronisation.
      await sleep(250);
      heapIdle = heapMB() - heapBefore;
      ctx.log(`${readers} idle readers: heap +${heapIdle.toFixed(1)} MB`);

      const sampling = setInterval(() => {
        admin`select count(*)::int as n from pg_stat_activity where application_name in (${engine.applicationName("pool")}, ${engine.applicationName("listener")})`
          .then(([row]) => connectionSamples.push(row!.n as number), () => {});
      }, 250);
      const cpu0 = process.cpuUsage();
      release.open();
      try {
        await within(60_000, "fan-out readers", Promise.all(all));
      } finally {
        clearInterval(sampling);
      }
      const cpu = process.cpuUsage(cpu0);
      cpuPerDelivery = (cpu.user + cpu.system) / (readers * writes);
      await handle.getResult();
      if (done !== readers) throw new Error(`${done} readers finished, expected ${readers}`);
      const missing = latency.reduce((n, v) => n + (Number.isNaN(v) ? 1 : 0), 0);
      if (missing > 0) throw new Error(`${missing} (reader, entry) deliveries missing`);
      await until("connection samples", 5000, () => connectionSamples.length > 0);
    } finally {
      release.open();
      await Promise.allSettled([engine.close(), admin.end({ timeout: 1 })]);
    }
    const perEntry = latencyRow(`pgtide, every reader × every entry (${readers.toLocaleString("en-US")} × ${writes})`, dist(latency), {
      label: "raw floor, one reader", value: dist(floor.latency),
    });
    const connections = Math.max(...connectionSamples);
    return {
      id: this.id,
      title: this.title,
      what: `One workflow writes ${writes} small entries at ${RATE}/s; ${readers.toLocaleString("en-US")} readers of that stream iterate in the same process and Engine. ` +
        `Latency is per (reader, entry), from the writeStream call to that reader's iterator yielding it. Connections: max over samples every 250 ms of pg_stat_activity rows whose application_name is the engine's pool or listener. ` +
        "Heap: heapUsed after forced GC, with the readers parked waiting, minus before they were created.",
      rows: [
        perEntry,
        { label: "engine connections during the run", unit: "connections", value: dist(connectionSamples) },
        { label: `heap growth, ${readers.toLocaleString("en-US")} idle readers`, unit: "MB", value: single(heapIdle) },
      ],
      targets: [
        { text: "per-entry delivery p50 ≤ 10 ms", measured: `${perEntry.value.median.toFixed(1)} ms`, ok: perEntry.value.median <= 10 },
        { text: "per-entry delivery p99 ≤ 50 ms", measured: `${perEntry.value.p99.toFixed(1)} ms`, ok: perEntry.value.p99 <= 50 },
        { text: "engine connections ≤ 3 (pg_stat_activity)", measured: String(connections), ok: connections <= 3 },
        { text: "heap growth for 10,000 idle readers ≤ 50 MB", measured: `${heapIdle.toFixed(1)} MB`, ok: heapIdle <= 50 },
      ],
      notes: [
        `This process's CPU while the writes were delivered: ${cpuPerDelivery.toFixed(2)} µs per (reader, entry), i.e. ${((cpuPerDelivery * readers * RATE) / 1e6).toFixed(2)} CPU-seconds per second at ${RATE} entries/s × ${readers.toLocaleString("en-US")} readers (one core = 1.00).`,
      ],
      seconds: (performance.now() - started) / 1000,
    };
  },
};
