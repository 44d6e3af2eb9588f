// Two ways a call used to wait far past retryTimeoutMs (found by the black-box attack):
// - a silent TCP path (a NAT or load balancer that forgot the connection drops its
//   packets without closing it): a query waited for the kernel's keepalive, ~11 minutes,
//   and getStatus, a workflow's writes and engine.close() with it;
// - many calls at once while Postgres refuses connections: postgres.js queues them until
//   a connection answers, and each call's own window only started when it got one (20
//   calls with retryTimeoutMs 1 s took up to 11 s).
import { afterEach, describe, expect, it } from "vitest";
import { CONNECT_TIMEOUT_MS } from "../src/db/connect.js";
import { ConnectionError, type Engine } from "../src/index.js";
import { PausableProxy } from "./faults/support/proxy.js";
import { databaseUrl, gate, openEngine, within } from "./support/engines.js";
import { OutageDoor } from "./support/outage.js";

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
});

/** What the promise settled with, and after how many ms. */
async function timed(promise: Promise<unknown>): Promise<{ outcome: unknown; ms: number }> {
  const started = Date.now();
  const outcome = await promise.then((value) => value, (error: unknown) => error);
  return { outcome, ms: Date.now() - started };
}

describe("many calls at once while Postgres refuses connections", () => {
  it("each rejects with ConnectionError about retryTimeoutMs after it was made, however many wait", async () => {
    const door = await OutageDoor.open(databaseUrl);
    closers.push(() => door.close());
    const engine = await openEngine({ databaseUrl: door.url(databaseUrl), retryTimeoutMs: 800 });
    engine.on("error", () => {});
    await door.down();
    const calls = Array.from({ length: 20 }, (_, i) => timed(engine.retrieveWorkflow(`w${i}`).getStatus()));
    const results = await within(20_000, "20 calls", Promise.all(calls));
    for (const { outcome, ms } of results) {
      expect(outcome).toBeInstanceOf(ConnectionError);
      expect(ms).toBeLessThan(800 + 1500);
    }
    await door.up();
    await expect(engine.retrieveWorkflow("w0").getStatus()).rejects.toMatchObject({ code: "WORKFLOW_NOT_FOUND" });
  });
});

describe("a query connection whose TCP path goes silent", () => {
  it(`a call on it fails over to a new connection within max(retryTimeoutMs, ${CONNECT_TIMEOUT_MS} ms); a run's write and close() are not held`, async () => {
    const target = new URL(databaseUrl);
    const proxy = await PausableProxy.start({ host: target.hostname, port: Number(target.port || 5432) });
    closers.push(() => proxy.close());
    const engine: Engine = await openEngine({ databaseUrl: proxy.url(databaseUrl), retryTimeoutMs: 1000, poolSize: 1 });
    const errors: unknown[] = [];
    engine.on("error", (error) => errors.push(error));
    const wrote = gate();
    const release = gate();
    const wf = engine.workflow("silent", async (ctx) => {
      await ctx.writeStream("s", "before");
      wrote.open();
      await release.promise;
      await ctx.writeStream("s", "after");
      return "done";
    });
    const handle = await wf.start();
    await within(5000, "the first write", wrote.promise);
    // Every byte on the pool's open connection is dropped from now on; new connections work.
    expect(proxy.blackhole((c) => c.applicationName === engine.applicationName("pool"))).toBe(1);
    release.open();
    const status = await within(CONNECT_TIMEOUT_MS + 10_000, "getStatus", timed(handle.getStatus()));
    // Answered on a new connection once the silent one was given up (or ConnectionError).
    expect(status.ms).toBeLessThan(CONNECT_TIMEOUT_MS + 5000);
    if (!(status.outcome instanceof ConnectionError)) expect(["PENDING", "SUCCESS"]).toContain(status.outcome);
    // The run's next write went out on the silent connection too: it fails over the same way.
    expect(await within(CONNECT_TIMEOUT_MS + 10_000, "the run", handle.getResult())).toBe("done");
    expect((await engine.readStream(handle.workflowId, "s")).values).toEqual(["before", "after"]);
    const closing = await within(CONNECT_TIMEOUT_MS + 5000, "close", timed(engine.close()));
    expect(closing.ms).toBeLessThan(CONNECT_TIMEOUT_MS + 2000);
    expect(errors.every((e) => e instanceof ConnectionError)).toBe(true);
  }, 60_000);
});
