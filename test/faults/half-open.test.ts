// Scenario 4: the listener's TCP path goes silent without closing (a TCP proxy between
// the engine and Postgres drops every byte of that connection, both ways, and keeps both
// sockets open). Postgres still believes the session listens; nothing tells the client.
// Only the heartbeat (pg_listening_channels() every heartbeatMs, answered within
// heartbeatMs) can notice; then the engine reconnects (through a fresh, working path)
// and readers re-read. The workflow writes a burst into the silence and waits until every
// reader has it, so no later notification can rescue a reader that was not told to re-read.
import { expect, it, onTestFinished } from "vitest";
import { admin, databaseUrl, openEngine } from "../support/engines.js";
import { prng, scenarioSeed } from "./support/prng.js";
import { PausableProxy } from "./support/proxy.js";
import { faultReport } from "./support/report.js";
import { exact, follow, SequenceChecker, tally } from "./support/sequence.js";
import { deadline, nextEvent, signal } from "./support/wait.js";

const TOTAL = 2000;
const READERS = 10;
const PARTITIONS = 6;
const HEARTBEAT_MS = 300;
/** The heartbeat's worst case (one interval, then one timed-out check) plus room for a busy machine. */
const DETECTION_BOUND_MS = 2 * HEARTBEAT_MS + 1000;

const report = faultReport(
  4,
  "Half-open listener (silent TCP path)",
  `${READERS} readers follow a ${TOTAL.toLocaleString("en-US")}-entry stream through a TCP proxy written in the test. ` +
    `At ${PARTITIONS} seeded entry counts the proxy blackholes the listener's connection (drops all bytes both ways, ` +
    "closes nothing); the workflow writes a burst into the silence and waits until every reader has it. " +
    `heartbeatMs = ${HEARTBEAT_MS}: the heartbeat asks pg_listening_channels() every heartbeatMs and gives the answer ` +
    "heartbeatMs to arrive, so a silent listener is noticed within 2 × heartbeatMs (plus the reconnect); the test " +
    `fails a partition that takes longer than ${DETECTION_BOUND_MS} ms to heal. New connections go through the proxy ` +
    "unharmed (only existing listener connections are blackholed). Not scaled (the issue sets no size).",
);

it(`readers catch up after ${PARTITIONS} silent partitions of the listener, each noticed within ~2 × heartbeatMs`, { timeout: 120_000 }, async () => {
  const seed = scenarioSeed(0x4a1f0e);
  report.seed(seed);
  const rng = prng(seed);
  const upstream = new URL(databaseUrl);
  const proxy = await PausableProxy.start({ host: upstream.hostname, port: Number(upstream.port || 5432) });
  onTestFinished(() => proxy.close()); // after the engine has closed
  const engine = await openEngine({ databaseUrl: proxy.url(databaseUrl), heartbeatMs: HEARTBEAT_MS });
  const errors: unknown[] = [];
  engine.on("error", (error) => errors.push(error));
  let reconnects = 0;
  engine.on("reconnected", () => reconnects++);

  const value = (i: number) => `v${i}`;
  const partitionAt = rng.distinct(PARTITIONS, 20, TOTAL - 100);
  const checkers: SequenceChecker[] = [];
  const following: Promise<void>[] = [];
  const isListener = (c: { applicationName: string | undefined }) => c.applicationName?.endsWith(":listener") === true;
  const healedIn: number[] = [];

  const go = signal();
  const wf = engine.workflow("half_open", async (ctx) => {
    await go.promise;
    let i = 0;
    const write = async (count: number) => {
      await Promise.all(Array.from({ length: count }, (_, j) => ctx.writeStream("s", value(i + j))));
      i += count;
    };
    for (const k of partitionAt) {
      while (i < k) await write(Math.min(k - i, rng.int(1, 40)));
      const reconnected = nextEvent(engine, "reconnected", DETECTION_BOUND_MS + 10_000);
      const silencedAt = performance.now();
      expect(proxy.blackhole(isListener)).toBeGreaterThanOrEqual(1);
      report.fault("silent partition{s}");
      await write(rng.int(1, 30)); // into the silence: their notifications are dropped
      await reconnected;
      healedIn.push(Math.round(performance.now() - silencedAt));
      await Promise.all(checkers.map((c) => c.reached(i, 10_000)));
    }
    while (i < TOTAL) await write(Math.min(TOTAL - i, rng.int(1, 40)));
    return i;
  });

  const handle = await wf.start();
  for (let r = 0; r < READERS; r++) {
    const from = r < 7 ? 0 : rng.int(1, TOTAL / 2);
    const checker = new SequenceChecker(`reader ${r} (from ${from})`, from, value, TOTAL);
    checkers.push(checker);
    following.push(follow(checker, engine.readStreamEntries(handle.workflowId, "s", { fromOffset: from })));
  }
  go.resolve();

  const result = await deadline(90_000, "the workflow", handle.getResult()).catch((error: unknown) => error);
  await deadline(30_000, "every reader to end", Promise.all(following)).catch(() => {});
  const counts = tally(checkers.map((c) => c.counts()));
  report.counts(counts);
  report.wrote(TOTAL);
  const worst = Math.max(...healedIn);
  report.note(`silence → reconnected: ${healedIn.join(", ")} ms (worst ${worst} ms; bound 2 × heartbeatMs = ${2 * HEARTBEAT_MS} ms + reconnect)`);
  report.note(`${reconnects} reconnects (${reconnects - PARTITIONS} beyond the partitions: heartbeats that timed out on a busy machine); ${proxy.dropped} bytes dropped in the silence`);

  expect(result).toBe(TOTAL);
  expect(counts.problems).toEqual([]);
  expect(exact(counts)).toBe(true);
  expect(healedIn).toHaveLength(PARTITIONS);
  expect(worst).toBeLessThanOrEqual(DETECTION_BOUND_MS);
  const [stored] = await admin.unsafe(
    `select count(*)::int as n, max("offset")::int as last from "${engine.schema}".stream_entries where workflow_id = $1`,
    [handle.workflowId],
  );
  expect(stored).toEqual({ n: TOTAL + 1, last: TOTAL });
});
