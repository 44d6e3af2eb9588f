// Scenario 5: concurrency soak on one engine. Many workflows write at once (their appends
// share group-committed transactions), one reader follows each stream and ten more
// readers each follow every stream. Every one of those sequences must be exact.
import { expect, it } from "vitest";
import { admin, openEngine } from "../support/engines.js";
import { faultReport } from "./support/report.js";
import { exact, follow, SequenceChecker, tally } from "./support/sequence.js";
import { deadline, signal } from "./support/wait.js";

const WORKFLOWS = 500;
const ENTRIES = 200;
const FOLLOW_ALL = 10;

const report = faultReport(
  5,
  `Concurrency soak: ${WORKFLOWS} workflows × ${ENTRIES} entries`,
  `One engine runs ${WORKFLOWS} workflows at once, each awaiting ${ENTRIES} writes to its own stream (the writer ` +
    `group-commits them, hundreds of streams per transaction). One reader follows each stream, and ${FOLLOW_ALL} ` +
    `more readers each follow all ${WORKFLOWS} streams: ${WORKFLOWS * (FOLLOW_ALL + 1)} sequences checked entry by ` +
    "entry. No fault is injected: this is the load the other scenarios' faults land on. Not scaled.",
);

it(`${WORKFLOWS} workflows × ${ENTRIES} entries, ${WORKFLOWS * (FOLLOW_ALL + 1)} readers, every sequence exact`, { timeout: 180_000 }, async () => {
  const engine = await openEngine({ poolSize: 4 });
  const errors: unknown[] = [];
  engine.on("error", (error) => errors.push(error));
  const go = signal();
  const wf = engine.workflow("soak", async (ctx, n: number) => {
    await go.promise;
    for (let i = 0; i < ENTRIES; i++) await ctx.writeStream("s", `${n}:${i}`);
    return n;
  });
  const handles = [];
  for (let n = 0; n < WORKFLOWS; n++) handles.push(await wf.start(n, { workflowId: `soak-${n}` }));

  const checkers: SequenceChecker[] = [];
  const following: Promise<void>[] = [];
  const read = (name: string, n: number) => {
    const checker = new SequenceChecker(name, 0, (i) => `${n}:${i}`, ENTRIES);
    checkers.push(checker);
    following.push(follow(checker, engine.readStreamEntries(`soak-${n}`, "s")));
  };
  for (let n = 0; n < WORKFLOWS; n++) read(`own reader of soak-${n}`, n);
  for (let r = 0; r < FOLLOW_ALL; r++) for (let n = 0; n < WORKFLOWS; n++) read(`reader ${r} of soak-${n}`, n);
  const started = performance.now();
  go.resolve();

  const results = await deadline(150_000, "every workflow", Promise.all(handles.map((h) => h.getResult())));
  const writtenMs = performance.now() - started;
  await deadline(60_000, "every reader to end", Promise.all(following));
  const readMs = performance.now() - started;
  const counts = tally(checkers.map((c) => c.counts()));
  report.counts(counts);
  report.wrote(WORKFLOWS * ENTRIES);
  report.note(`${(WORKFLOWS * ENTRIES).toLocaleString("en-US")} entries written in ${(writtenMs / 1000).toFixed(1)} s; all ${checkers.length} readers done ${(readMs / 1000).toFixed(1)} s after the start (${Math.round(counts.read / (readMs / 1000)).toLocaleString("en-US")} entries delivered per second)`);

  expect(results).toEqual(handles.map((_, n) => n));
  expect(counts.problems).toEqual([]);
  expect(exact(counts)).toBe(true);
  expect(counts.readers).toBe(WORKFLOWS * (FOLLOW_ALL + 1));
  expect(errors).toEqual([]);
  const [stored] = await admin.unsafe(
    `select count(*)::int as n, count(*) filter (where closed)::int as closes from "${engine.schema}".stream_entries`,
  );
  expect(stored).toEqual({ n: WORKFLOWS * (ENTRIES + 1), closes: WORKFLOWS });
});
