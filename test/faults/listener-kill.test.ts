// Scenario 1: the listener's backend is killed with pg_terminate_backend again and again
// while 50 readers follow a 5,000-entry stream. After each kill the workflow writes a
// burst, then waits until every reader has it: no later write can wake them, so a burst
// committed while the listener was down reaches them only by the re-read after the
// reconnect. Every other kill, a TCP proxy holds the new listener connection at the door
// until the burst has committed, so that case is certain to happen, not only likely.
import { expect, it, onTestFinished } from "vitest";
import { admin, databaseUrl, openEngine } from "../support/engines.js";
import { prng, scenarioSeed } from "./support/prng.js";
import { PausableProxy } from "./support/proxy.js";
import { faultReport } from "./support/report.js";
import { exact, follow, SequenceChecker, tally } from "./support/sequence.js";
import { deadline, nextEvent, signal } from "./support/wait.js";

const TOTAL = 5000;
const READERS = 40; // from the start; 10 more join mid-stream
const LATE_READERS = 10;
const KILLS = 20;

const report = faultReport(
  1,
  "Listener killed 20× mid-stream (+1 during a shared read)",
  `${READERS + LATE_READERS} readers (a quarter of them slow, ten joining halfway from random offsets) follow one ` +
    `${TOTAL.toLocaleString("en-US")}-entry stream written in group-committed windows. At ${KILLS} seeded entry counts the ` +
    "listener's backend is killed with `pg_terminate_backend` (waiting for it to exit); the workflow then writes a " +
    "burst and waits until every reader has it, so no later write can wake them. On every other kill a TCP proxy " +
    "holds the new listener connection until the burst has committed: those notifications are certainly lost and " +
    "only the re-read after the reconnect delivers the burst. A second, deterministic test covers the narrow case " +
    "of a reader that joins a read begun (and answered by Postgres) before the reconnect. Not scaled.",
);

it(`${READERS + LATE_READERS} readers see all ${TOTAL} entries exactly once while the listener is killed ${KILLS} times`, { timeout: 120_000 }, async () => {
  const seed = scenarioSeed(0x5ca1ab1e);
  report.seed(seed);
  const rng = prng(seed);
  const upstream = new URL(databaseUrl);
  const proxy = await PausableProxy.start({ host: upstream.hostname, port: Number(upstream.port || 5432) });
  onTestFinished(() => proxy.close()); // after the engine has closed
  const engine = await openEngine({ databaseUrl: proxy.url(databaseUrl) });
  const errors: unknown[] = [];
  engine.on("error", (error) => errors.push(error));
  let reconnects = 0;
  let listening = true;
  engine.on("reconnected", () => {
    reconnects++;
    listening = true;
  });

  const value = (i: number) => ({ i, text: `entry ${i}` });
  const killAt = rng.distinct(KILLS, 50, TOTAL - 100);
  const lateAt = killAt[KILLS / 2]!;
  const checkers: SequenceChecker[] = [];
  const following: Promise<void>[] = [];
  let workflowId = "";
  const startReader = (from: number, slow: boolean) => {
    const checker = new SequenceChecker(`reader ${checkers.length} (from ${from}${slow ? ", slow" : ""})`, from, value, TOTAL);
    checkers.push(checker);
    // A slow reader yields to the event loop after each entry, so it lags the others.
    const each = slow ? () => new Promise<void>((resolve) => setImmediate(resolve)) : undefined;
    following.push(follow(checker, engine.readStreamEntries(workflowId, "s", { fromOffset: from }), each));
  };

  const kill = async () => {
    let pid = await engine.listenerPid().catch(() => undefined);
    if (pid === undefined) {
      await nextEvent(engine, "reconnected", 10_000);
      pid = await engine.listenerPid();
    }
    listening = false;
    // With a timeout, pg_terminate_backend waits until the backend has exited.
    const [row] = await admin`select pg_terminate_backend(${pid!}, 10000) as ok`;
    expect(row?.ok).toBe(true);
    report.fault("listener kill{s}");
  };

  let burstsInGap = 0;
  const go = signal();
  const wf = engine.workflow("listener_kill", async (ctx) => {
    await go.promise;
    let i = 0;
    const write = async (count: number) => {
      await Promise.all(Array.from({ length: count }, (_, j) => ctx.writeStream("s", value(i + j))));
      i += count;
    };
    for (const [n, k] of killAt.entries()) {
      while (i < k) await write(Math.min(k - i, rng.int(1, 64)));
      const holdReconnect = n % 2 === 1;
      if (holdReconnect) proxy.holdNew(isListener);
      await kill();
      await write(rng.int(1, 30));
      if (!listening) burstsInGap++; // committed before the new LISTEN was confirmed
      if (holdReconnect) proxy.release();
      if (k === lateAt) {
        for (let r = 0; r < LATE_READERS; r++) startReader(rng.int(0, i), r % 4 === 0);
      }
      await Promise.all(checkers.map((c) => c.reached(i, 15_000)));
    }
    while (i < TOTAL) await write(Math.min(TOTAL - i, rng.int(1, 64)));
    return i;
  });

  const handle = await wf.start();
  workflowId = handle.workflowId;
  for (let r = 0; r < READERS; r++) startReader(r < 30 ? 0 : rng.int(1, TOTAL / 2), r % 4 === 0);
  go.resolve();

  const result = await deadline(90_000, "the workflow", handle.getResult()).catch((error: unknown) => error);
  await deadline(30_000, "every reader to end", Promise.all(following)).catch(() => {});
  const counts = tally(checkers.map((c) => c.counts()));
  report.counts(counts);
  report.wrote(TOTAL);
  report.note(`${reconnects} reconnects for ${KILLS} kills; ${burstsInGap} of ${KILLS} post-kill bursts committed before the new LISTEN was confirmed (${proxy.held} reconnects held at the proxy)`);
  report.note(`${errors.length} listener errors reported on the engine's "error" event`);

  expect(result).toBe(TOTAL);
  expect(counts.problems).toEqual([]);
  expect(exact(counts)).toBe(true);
  expect(counts.readers).toBe(READERS + LATE_READERS);
  expect(reconnects).toBeGreaterThanOrEqual(KILLS);
  expect(burstsInGap).toBeGreaterThanOrEqual(KILLS / 2);
  const [stored] = await admin.unsafe(
    `select count(*)::int as n, count(distinct "offset")::int as distinct_offsets, max("offset")::int as last,
            count(*) filter (where closed)::int as closes
     from "${engine.schema}".stream_entries where workflow_id = $1 and key = 's'`,
    [workflowId],
  );
  expect(stored).toEqual({ n: TOTAL + 1, distinct_offsets: TOTAL + 1, last: TOTAL, closes: 1 });
});

it("a reader that joins a read begun before the reconnect still gets the entries whose notifications were lost", { timeout: 60_000 }, async () => {
  // The shared read is the narrow case: reader A has asked for the next page, and the
  // query has run, when the listener dies; entries are committed while it is down; it
  // reconnects; then reader B, slower on the same stream, asks for the same page. If B
  // joins A's query (whose snapshot predates those entries) and then waits for a
  // notification, nothing will ever wake it.
  const PAGE = 2000; // the engine's page size
  const upstream = new URL(databaseUrl);
  const proxy = await PausableProxy.start({ host: upstream.hostname, port: Number(upstream.port || 5432) });
  onTestFinished(() => proxy.close());
  const readers = await openEngine({ databaseUrl: proxy.url(databaseUrl) });
  const writer = await openEngine({ schema: readers.schema });
  const more = signal();
  const moreWritten = signal();
  const finish = signal();
  const wf = writer.workflow("shared_read", async (ctx) => {
    await Promise.all(Array.from({ length: PAGE }, (_, i) => ctx.writeStream("s", i)));
    await more.promise;
    await Promise.all(Array.from({ length: 5 }, (_, i) => ctx.writeStream("s", PAGE + i)));
    moreWritten.resolve();
    await finish.promise; // stays PENDING: no status notification may wake the readers
  });
  const handle = await wf.start();

  const a = new SequenceChecker("reader A", 0, (i) => i, PAGE + 5);
  const b = new SequenceChecker("reader B", 0, (i) => i, PAGE + 5);
  const bGate = signal();
  const bDoneWithPage = signal();
  let stalled: Promise<void> | undefined;
  const isPool = (c: { applicationName: string | undefined }) => c.applicationName?.endsWith(":pool") === true;
  const following = [
    follow(a, readers.readStreamEntries(handle.workflowId, "s"), (offset) => {
      // A's next read is the query whose answer the proxy holds back.
      if (offset === PAGE - 1) stalled = proxy.stallResponses(isPool);
    }),
    follow(b, readers.readStreamEntries(handle.workflowId, "s"), async (offset) => {
      if (offset === 5) await bGate.promise;
      if (offset === PAGE - 1) bDoneWithPage.resolve();
    }),
  ];
  await a.reached(PAGE, 10_000); // A's callback for its last entry has run: its next read will be held back
  await deadline(10_000, "A's next read to run", stalled!);

  const pid = await readers.listenerPid();
  proxy.holdNew(isListener);
  const [row] = await admin`select pg_terminate_backend(${pid!}, 10000) as ok`;
  expect(row?.ok).toBe(true);
  report.fault("listener kill{s}");
  more.resolve();
  await deadline(10_000, "the entries written while the listener is down", moreWritten.promise);
  const reconnected = nextEvent(readers, "reconnected", 10_000);
  proxy.release();
  await reconnected;

  bGate.resolve();
  await deadline(10_000, "B to finish the page", bDoneWithPage.promise);
  await new Promise((resolve) => setImmediate(resolve)); // B's next read is asked for (microtasks only)
  proxy.unstall();
  const caughtUp = await Promise.all([a.reached(PAGE + 5, 5000), b.reached(PAGE + 5, 5000)]).then(() => true, (error: unknown) => error);
  finish.resolve();
  await deadline(10_000, "both readers to end", Promise.all(following));
  expect(caughtUp).toBe(true);
  const counts = tally([a.counts(), b.counts()]);
  report.counts(counts);
  report.wrote(PAGE + 5);
  report.note(`shared read across a reconnect: reader B ${caughtUp === true ? "caught up" : "was left waiting"} after joining a read answered before the reconnect`);
  expect(counts.problems).toEqual([]);
  expect(exact(counts)).toBe(true);
});

function isListener(c: { applicationName: string | undefined }): boolean {
  return c.applicationName?.endsWith(":listener") === true;
}
