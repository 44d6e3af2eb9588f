// Scenario 2: Postgres itself goes away. A private embedded Postgres (its own data dir,
// so the shared test database is untouched) is stopped with a fast shutdown and started
// again on the same port while a workflow streams and readers follow: appends in flight
// are retried, readers catch up, the workflow finishes. Then Postgres stays down past
// retryTimeoutMs: writeStream rejects with ConnectionError, the workflow stays PENDING,
// and launch() finishes it once Postgres is back.
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import postgres from "postgres";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startEmbeddedPostgres, type EmbeddedPostgres } from "../../src/db/embedded.js";
import { ConnectionError, Engine } from "../../src/index.js";
import { prng, scenarioSeed } from "./support/prng.js";
import { faultReport } from "./support/report.js";
import { exact, follow, SequenceChecker, tally } from "./support/sequence.js";
import { deadline, nextEvent, signal } from "./support/wait.js";

const TOTAL = 3000;
const READERS = 5;
const RESTARTS = 3;
const OUTAGE_ENTRIES = 300;
const RETRY_TIMEOUT_MS = 1500;

const report = faultReport(
  2,
  "Postgres restarted mid-stream; kept down past retryTimeoutMs",
  `A private embedded Postgres (its own data dir) serves this test. Part 1: ${READERS} readers follow a ` +
    `${TOTAL.toLocaleString("en-US")}-entry stream while Postgres is stopped (fast shutdown) and started again on the ` +
    `same port ${RESTARTS} times, at seeded entry counts, with appends in flight each time; the workflow runs on ` +
    "unaware and finishes. Part 2: Postgres is stopped mid-stream and kept down; with retryTimeoutMs = " +
    `${RETRY_TIMEOUT_MS} the pending writeStream rejects with ConnectionError (code CONNECTION), the workflow stays ` +
    "PENDING, and after Postgres is back, launch() finishes it while a reader that waited through the outage gets " +
    `every entry. Part 2 writes ${OUTAGE_ENTRIES} entries. Not scaled.`,
);

let dir: string;
let pg: EmbeddedPostgres;
const engines: Engine[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "pgtide-restart-"));
  await chmod(dir, 0o755); // Postgres runs as the postgres user and must reach its data dir
  pg = await startEmbeddedPostgres({ dataDir: path.join(dir, "pgdata") });
  const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
  const [row] = await sql`select current_setting('server_version') as v`;
  await sql.end();
  report.postgres(`${String(row?.v).split(" ")[0]} (private)`);
}, 60_000);

afterAll(async () => {
  for (const engine of engines) await engine.close().catch(() => {});
  await pg?.stop();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

async function stopPostgres(): Promise<void> {
  await pg.stop();
}

async function startPostgres(): Promise<void> {
  pg = await startEmbeddedPostgres({ dataDir: pg.dataDir, port: pg.port });
}

async function open(schema: string, retryTimeoutMs: number): Promise<{ engine: Engine; errors: unknown[]; reconnects: () => number }> {
  const engine = await Engine.open({ databaseUrl: pg.url, schema, retryTimeoutMs, heartbeatMs: 500 });
  engines.push(engine);
  const errors: unknown[] = [];
  engine.on("error", (error) => errors.push(error));
  let reconnects = 0;
  engine.on("reconnected", () => reconnects++);
  return { engine, errors, reconnects: () => reconnects };
}

it(`a workflow streams through ${RESTARTS} Postgres restarts: in-flight appends retried, readers catch up, it finishes`, { timeout: 120_000 }, async () => {
  const seed = scenarioSeed(0x2e57a27);
  report.seed(seed);
  const rng = prng(seed);
  const { engine, errors, reconnects } = await open("restart_a", 60_000);
  const value = (i: number) => ({ i });
  const restartAt = rng.distinct(RESTARTS, 200, TOTAL - 300);
  const inFlightAtStop: number[] = [];
  const restartMs: number[] = [];
  const relistenMs: number[] = [];
  let restarting: Promise<void> = Promise.resolve();

  const go = signal();
  const wf = engine.workflow("restart", async (ctx) => {
    await go.promise;
    let i = 0;
    let next = 0;
    let pending = 0;
    const window = new Set<Promise<void>>();
    while (i < TOTAL) {
      // Up to 64 appends in flight; a restart is started while they are.
      while (window.size < 64 && i < TOTAL) {
        const write = ctx.writeStream("s", value(i)).finally(() => {
          pending--;
          window.delete(write);
        });
        pending++;
        window.add(write);
        i++;
        if (restartAt[next] === i) {
          next++;
          const inFlight = pending;
          restarting = restarting.then(async () => {
            const t = performance.now();
            inFlightAtStop.push(inFlight);
            const listening = nextEvent(engine, "reconnected", 20_000);
            await stopPostgres();
            report.fault("Postgres restart{s}");
            await startPostgres();
            const up = performance.now();
            restartMs.push(Math.round(up - t));
            // The next restart waits for this one to be over: the listener back too.
            await listening;
            relistenMs.push(Math.round(performance.now() - up));
          });
        }
      }
      await Promise.race(window);
    }
    await Promise.all(window);
    return i;
  });

  const handle = await wf.start();
  const checkers = Array.from({ length: READERS }, (_, r) => new SequenceChecker(`reader ${r}`, 0, value, TOTAL));
  const following = checkers.map((c) => follow(c, engine.readStreamEntries(handle.workflowId, "s")));
  go.resolve();

  const result = await deadline(90_000, "the workflow", handle.getResult()).catch((error: unknown) => error);
  await restarting;
  await deadline(30_000, "every reader to end", Promise.all(following)).catch(() => {});
  const counts = tally(checkers.map((c) => c.counts()));
  report.counts(counts);
  report.wrote(TOTAL);
  report.note(`part 1: appends in flight when each stop began: ${inFlightAtStop.join(", ")}; stop + start took ${restartMs.join(", ")} ms; the listener was back ${relistenMs.join(", ")} ms after each start; ${reconnects()} listener reconnects, ${errors.length} errors reported while Postgres was down`);

  expect(result).toBe(TOTAL);
  expect(restartMs).toHaveLength(RESTARTS);
  expect(inFlightAtStop.every((n) => n > 0)).toBe(true);
  expect(counts.problems).toEqual([]);
  expect(exact(counts)).toBe(true);
  expect(reconnects()).toBeGreaterThanOrEqual(RESTARTS);
});

it(`Postgres down past retryTimeoutMs: writeStream rejects with ConnectionError, the workflow stays PENDING, launch() finishes it`, { timeout: 120_000 }, async () => {
  const seed = scenarioSeed(0x0b7a6e);
  const rng = prng(seed);
  const { engine, errors } = await open("restart_b", RETRY_TIMEOUT_MS);
  const value = (i: number) => `entry ${i}`;
  const stopAt = rng.int(50, OUTAGE_ENTRIES - 50);
  let first = true;
  let stoppedAt = 0;
  const rejected = signal<{ error: unknown; afterMs: number }>();
  let stopping: Promise<void> = Promise.resolve();

  const go = signal();
  const wf = engine.workflow("outage", async (ctx) => {
    await go.promise;
    for (let i = 0; i < OUTAGE_ENTRIES; i++) {
      if (first && i === stopAt) {
        first = false;
        stoppedAt = performance.now();
        stopping = stopPostgres();
        report.fault("outage{s} past retryTimeoutMs");
      }
      try {
        await ctx.writeStream("s", value(i));
      } catch (error) {
        rejected.resolve({ error, afterMs: Math.round(performance.now() - stoppedAt) });
        throw error;
      }
    }
    return "done";
  });

  const handle = await wf.start();
  const checker = new SequenceChecker("reader across the outage", 0, value, OUTAGE_ENTRIES);
  const following = follow(checker, engine.readStreamEntries(handle.workflowId, "s"));
  go.resolve();

  const { error, afterMs } = await deadline(RETRY_TIMEOUT_MS + 20_000, "writeStream to reject", rejected.promise);
  await stopping;
  expect(error).toBeInstanceOf(ConnectionError);
  expect((error as ConnectionError).code).toBe("CONNECTION");
  expect(afterMs).toBeGreaterThanOrEqual(RETRY_TIMEOUT_MS - 50);
  expect(afterMs).toBeLessThan(RETRY_TIMEOUT_MS + 5000);

  await startPostgres();
  // Checked on a connection of its own: the engine's first call after the outage is launch().
  const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
  const [row] = await sql`select status, (select count(*)::int from restart_b.stream_entries where workflow_id = ${handle.workflowId}) as stored
                          from restart_b.workflow_status where workflow_id = ${handle.workflowId}`;
  await sql.end();
  expect(row?.status).toBe("PENDING");
  const storedBefore = row?.stored as number;
  expect(storedBefore).toBeGreaterThanOrEqual(stopAt);
  expect(storedBefore).toBeLessThan(OUTAGE_ENTRIES);

  const launchedAt = performance.now();
  await engine.launch();
  const launchMs = Math.round(performance.now() - launchedAt);
  expect(await deadline(30_000, "the recovered workflow", handle.getResult())).toBe("done");
  await deadline(30_000, "the reader to end", following);
  const counts = checker.counts();
  report.counts(counts);
  report.wrote(OUTAGE_ENTRIES);
  report.note(`part 2: writeStream rejected ${afterMs} ms after the stop with ${(error as Error).name} (code ${(error as ConnectionError).code}); ${storedBefore} entries were stored before it; launch() took ${launchMs} ms and the recovered run wrote the rest; ${errors.length} errors reported while Postgres was down`);
  expect(counts.problems).toEqual([]);
  expect(exact(counts)).toBe(true);
});
