// Scenario 6: a slow consumer. A workflow writes 100,000 entries as fast as it can while
// a reader consumes about one entry per millisecond. The reader pages through the table
// (2,000 rows per query) instead of buffering what it has not consumed, so its heap
// stays flat while it lags tens of thousands of entries (about 50 MB) behind.
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { expect, it } from "vitest";
import { admin, openEngine } from "../support/engines.js";
import { faultReport } from "./support/report.js";
import { exact, follow, SequenceChecker } from "./support/sequence.js";
import { deadline, signal } from "./support/wait.js";

const TOTAL = 100_000;
const PAD = "x".repeat(480); // ~500-byte values: 50 MB in all
const WINDOW = 1000; // appends in flight at once
const SAMPLE_EVERY = 200;
/** The reader stays slow at least this long: past two of its 2,000-entry pages. */
const SLOW_ENTRIES = 5000;
/** Heap growth allowed while lagging: a few pages, far below the ~60 MB the lag would take buffered. */
const HEAP_BOUND_MB = 24;

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
const heapMb = () => {
  gc();
  return process.memoryUsage().heapUsed / 2 ** 20;
};

const report = faultReport(
  6,
  "Slow consumer: 100,000 entries, reader at ~1 entry/ms",
  `A workflow writes ${TOTAL.toLocaleString("en-US")} entries of ~500 bytes (${WINDOW} appends in flight at a time) while ` +
    "one reader consumes at most one entry per millisecond (a 1 ms timer per entry; nearer 3 ms while the writer " +
    `shares the event loop). Scaled: the reader stays that slow until the writer has finished and it has read ` +
    `${SLOW_ENTRIES.toLocaleString("en-US")} entries (past two of its pages, with the lag at its largest), then reads ` +
    "the rest at full speed; at 1 entry/ms throughout, the test would take 100 s. The heap (after a forced GC) is " +
    `sampled every ${SAMPLE_EVERY} entries while the reader is slow; ` +
    `its growth over the baseline must stay under ${HEAP_BOUND_MB} MB, where buffering the lag would take ~60 MB.`,
);

it(`a reader at ~1 entry/ms behind a fast writer of ${TOTAL} entries keeps a flat heap and misses nothing`, { timeout: 180_000 }, async () => {
  const engine = await openEngine();
  const value = (i: number) => ({ i, pad: PAD });
  const go = signal();
  let writerDone = false;
  const wf = engine.workflow("fast_writer", async (ctx) => {
    await go.promise;
    const window = new Set<Promise<void>>();
    for (let i = 0; i < TOTAL; i++) {
      const write = ctx.writeStream("s", value(i)).finally(() => window.delete(write));
      window.add(write);
      if (window.size >= WINDOW) await Promise.race(window);
    }
    await Promise.all(window);
    writerDone = true;
    return TOTAL;
  });
  const handle = await wf.start();

  const checker = new SequenceChecker("slow reader", 0, value, TOTAL);
  const baseline = heapMb();
  const samples: number[] = [];
  let lagAtWriterEnd = -1;
  let consumedWhileSlow = 0;
  const started = performance.now();
  const following = follow(checker, engine.readStreamEntries(handle.workflowId, "s"), async (offset) => {
    if (writerDone && lagAtWriterEnd < 0) lagAtWriterEnd = TOTAL - (offset + 1);
    if (writerDone && offset + 1 > SLOW_ENTRIES) return; // the rest at full speed
    consumedWhileSlow = offset + 1;
    if ((offset + 1) % SAMPLE_EVERY === 0) samples.push(heapMb() - baseline);
    await new Promise((resolve) => setTimeout(resolve, 1));
  });
  go.resolve();

  const result = await deadline(150_000, "the writer", handle.getResult());
  const writeMs = performance.now() - started;
  await deadline(120_000, "the reader to end", following);
  const counts = checker.counts();
  report.counts(counts);
  report.wrote(TOTAL);
  const worst = Math.max(...samples);
  report.note(`the writer finished in ${(writeMs / 1000).toFixed(1)} s with the reader ${lagAtWriterEnd.toLocaleString("en-US")} entries behind (~${Math.round((lagAtWriterEnd * 500) / 2 ** 20)} MB of values); it read ${consumedWhileSlow.toLocaleString("en-US")} entries slowly, then the rest at full speed`);
  report.note(`heap growth over the baseline while slow: max ${worst.toFixed(1)} MB over ${samples.length} samples (bound ${HEAP_BOUND_MB} MB)`);

  expect(result).toBe(TOTAL);
  expect(counts.problems).toEqual([]);
  expect(exact(counts)).toBe(true);
  expect(lagAtWriterEnd).toBeGreaterThan(TOTAL / 2); // the reader really was far behind
  expect(samples.length).toBeGreaterThan(3);
  expect(worst).toBeLessThan(HEAP_BOUND_MB);
  const [stored] = await admin.unsafe(
    `select count(*)::int as n from "${engine.schema}".stream_entries where workflow_id = $1`, [handle.workflowId],
  );
  expect(stored).toEqual({ n: TOTAL + 1 });
});
