// Scenario 7: several engines in several processes on one schema. Two worker processes
// (executor ids w1 and w2) each run five workflows; three reader processes follow all
// ten streams live. w1 is SIGKILLed in the middle of its second half. w2 then writes its
// second half and finishes, and every reader gets all of w2's streams to the close while
// w1 is still dead, with no reconnect and no error in any reader. Finally a fresh process
// with executor id w1 calls launch() and w1's streams complete.
import { expect, it } from "vitest";
import { admin, databaseUrl, openEngine, uniqueSchema } from "../support/engines.js";
import { Child, fixture } from "./support/children.js";
import { prng, scenarioSeed } from "./support/prng.js";
import type { ReaderConfig, ReaderMessage } from "./support/reader.js";
import { faultReport } from "./support/report.js";
import { exact, tally } from "./support/sequence.js";
import type { WorkerConfig, WorkerMessage } from "./support/worker.js";

const PER_WORKER = 5;
const ENTRIES = 400;
const READERS = 3;

const report = faultReport(
  7,
  "Two worker processes, three reader processes; one worker killed",
  `Two worker processes (executor ids w1, w2) each start ${PER_WORKER} workflows writing ${ENTRIES} entries; three ` +
    "reader processes follow all ten streams live, each with its own engine. Every workflow pauses halfway until the " +
    "readers have its first half. w1 is released and SIGKILLed at a seeded entry count of one of its workflows; then " +
    "w2 is released: it must finish, and all three readers must get every w2 stream to its close while w1 is dead, " +
    "with no listener reconnect and no error in any reader. A fresh w1 process then calls launch() and w1's streams " +
    "complete. Not scaled.",
);

it("killing one worker process disturbs neither the other worker nor the reader processes", { timeout: 120_000 }, async () => {
  const seed = scenarioSeed(0x7a11ce);
  report.seed(seed);
  const rng = prng(seed);
  const schema = uniqueSchema("faults_multi");
  await openEngine({ schema }); // migrates the schema (and drops it after the file)
  const ids = (w: string) => Array.from({ length: PER_WORKER }, (_, j) => `${w}-wf-${j}`);
  const producer = (executorId: string, mode: "start" | "recover"): WorkerConfig => ({
    role: "producer", url: databaseUrl, schema, executorId, ids: ids(executorId), entries: ENTRIES, mode,
    gateOpen: mode === "recover", progressEvery: 10,
  });
  const w1 = new Child<WorkerMessage>("worker w1", fixture("worker.ts"), producer("w1", "start"));
  const w2 = new Child<WorkerMessage>("worker w2", fixture("worker.ts"), producer("w2", "start"));
  await Promise.all([w1, w2].map((w) => w.waitFor("ready", (m) => m.type === "ready", 30_000)));

  const all = [...ids("w1"), ...ids("w2")];
  const readers = Array.from({ length: READERS }, (_, r) =>
    new Child<ReaderMessage>(`reader ${r}`, fixture("reader.ts"), { url: databaseUrl, schema, name: `reader-${r}`, ids: all, entries: ENTRIES } satisfies ReaderConfig),
  );
  const reached = (offset: number, which: string[]) =>
    Promise.all(readers.flatMap((reader) => which.map((id) =>
      reader.waitFor(`${id} to reach ${offset}`, (m) => m.type === "reached" && m.id === id && m.offset === offset, 60_000),
    )));
  const closed = (which: string[]) =>
    Promise.all(readers.flatMap((reader) => which.map((id) =>
      reader.waitFor(`${id} to close`, (m) => m.type === "closed" && m.id === id, 60_000),
    )));
  await reached(ENTRIES / 2, all);

  // w1 runs on and dies mid-stream.
  const victim = rng.pick(ids("w1"));
  const killAt = rng.int(ENTRIES / 20 + 3, ENTRIES / 10 - 2) * 10; // 230..380, a multiple of the progress step
  w1.send({ type: "open" });
  await w1.waitFor(`${victim} to write ${killAt}`, (m) => m.type === "progress" && m.id === victim && m.written >= killAt, 60_000);
  await w1.kill();
  report.fault("worker SIGKILL{s}");

  // w2 finishes, and every reader gets all of it, while w1 is dead.
  w2.send({ type: "open" });
  await w2.waitFor("w2 to finish", (m) => m.type === "done", 60_000);
  expect(await w2.exited).toEqual({ code: 0, signal: null });
  await closed(ids("w2"));
  const w1Rows = (await admin.unsafe(
    `select status, count(*)::int as n from "${schema}".workflow_status where executor_id = 'w1' group by status`,
  )) as unknown as { status: string; n: number }[];
  expect(w1Rows).toEqual([{ status: "PENDING", n: PER_WORKER }]);

  // A fresh w1 recovers its workflows; the readers (never restarted) get the rest.
  const w1b = new Child<WorkerMessage>("worker w1 (recovered)", fixture("worker.ts"), producer("w1", "recover"));
  await w1b.waitFor("recovered w1 to finish", (m) => m.type === "done", 60_000);
  expect(await w1b.exited).toEqual({ code: 0, signal: null });
  const done = await Promise.all(readers.map((reader) => reader.waitFor("its counts", (m): m is Extract<ReaderMessage, { type: "done" }> => m.type === "done", 60_000)));
  const counts = tally(done.map((d) => d.counts));
  report.counts(counts);
  report.wrote(all.length * ENTRIES);
  report.note(`w1 killed when ${victim} had written ${killAt}; the readers' engines saw ${done.map((d) => d.reconnects).join("/")} reconnects and ${done.map((d) => d.errors.length).join("/")} errors`);

  expect(counts.problems).toEqual([]);
  expect(exact(counts)).toBe(true);
  expect(counts.readers).toBe(READERS * all.length);
  expect(done.map((d) => [d.reconnects, d.errors])).toEqual(readers.map(() => [0, []]));
  for (const reader of readers) expect(await reader.exited).toEqual({ code: 0, signal: null });
});
