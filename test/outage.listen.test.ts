// A listener connection whose LISTEN is never answered (the path goes silent after the
// startup). Found by the black-box attack: Engine.open waited for ever, and a listener
// that reconnected into that state left every reader and getResult waiting for good,
// the workflow long finished (no heartbeat runs while the engine is not listening).
import { afterEach, describe, expect, it } from "vitest";
import { ConnectionError, Engine } from "../src/index.js";
import { PausableProxy } from "./faults/support/proxy.js";
import { admin, collect, databaseUrl, gate, openEngine, uniqueSchema, within } from "./support/engines.js";

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
});

async function proxied(): Promise<PausableProxy> {
  const target = new URL(databaseUrl);
  const proxy = await PausableProxy.start({ host: target.hostname, port: Number(target.port || 5432) });
  closers.push(() => proxy.close());
  return proxy;
}

/** The LISTEN of listener connections (the first `times` of them) is dropped, and all after it. */
function silenceListen(proxy: PausableProxy, times: number): { trapped: () => number } {
  let trapped = 0;
  proxy.blackholeWhen((c, chunk) => {
    if (trapped >= times || !c.applicationName?.endsWith(":listener") || !chunk.includes("listen \"")) return false;
    trapped++;
    return true;
  });
  return { trapped: () => trapped };
}

describe("a LISTEN that is never answered", () => {
  it("fails Engine.open with ConnectionError (it waited for ever)", async () => {
    const proxy = await proxied();
    silenceListen(proxy, Infinity);
    const started = Date.now();
    const opening = Engine.open({ databaseUrl: proxy.url(databaseUrl), schema: uniqueSchema(), retryTimeoutMs: 1000, heartbeatMs: 500 });
    opening.then((engine) => closers.push(() => engine.close()), () => {});
    const error = await within(20_000, "Engine.open", opening.then(() => undefined, (e: unknown) => e));
    expect(error).toBeInstanceOf(ConnectionError);
    expect(Date.now() - started).toBeLessThan(10_000 + 2000);
  });

  it("on a reconnect is given up and tried again: a reader and getResult get what follows", async () => {
    const proxy = await proxied();
    const engine = await openEngine({ databaseUrl: proxy.url(databaseUrl), heartbeatMs: 300 });
    engine.on("error", () => {});
    closers.push(() => engine.close());
    const release = gate();
    const wf = engine.workflow("deaf", async (ctx) => {
      await ctx.writeStream("s", "a");
      await release.promise;
      await ctx.writeStream("s", "b");
      return "done";
    });
    const handle = await wf.start();
    const reading = collect(engine.readStreamAsync<string>(handle.workflowId, "s"));
    const result = handle.getResult();
    const trap = silenceListen(proxy, 1);
    await admin`select pg_terminate_backend(pid) from pg_stat_activity where application_name = ${engine.applicationName("listener")}`;
    await within(10_000, "the reconnect's LISTEN to be dropped", new Promise<void>((resolve) => {
      const look = () => (trap.trapped() > 0 ? resolve() : setTimeout(look, 10));
      look();
    }));
    release.open();
    expect(await within(10_000, "the reader", reading)).toEqual(["a", "b"]);
    expect(await within(10_000, "getResult", result)).toBe("done");
  });
});

describe("a cancel committed while the listener was away", () => {
  it("still reaches the run: after the reconnect its ctx.signal aborts (its NOTIFY went to nobody)", async () => {
    const proxy = await proxied();
    const engine = await openEngine({ databaseUrl: proxy.url(databaseUrl), heartbeatMs: 300 });
    engine.on("error", () => {});
    closers.push(() => engine.close());
    const other = await openEngine({ schema: engine.schema });
    closers.push(() => other.close());
    const inStep = gate();
    const aborted = gate<unknown>();
    const wf = engine.workflow("cancelled-away", async (ctx) => {
      await ctx.step("long call", () => new Promise<void>((resolve) => {
        inStep.open();
        ctx.signal.addEventListener("abort", () => {
          aborted.open(ctx.signal.reason);
          resolve();
        }, { once: true });
      }));
      return "not cancelled";
    });
    const handle = await wf.start();
    await within(5000, "the step", inStep.promise);
    const trap = silenceListen(proxy, 1);
    await admin`select pg_terminate_backend(pid) from pg_stat_activity where application_name = ${engine.applicationName("listener")}`;
    await within(10_000, "the reconnect's LISTEN to be dropped", new Promise<void>((resolve) => {
      const look = () => (trap.trapped() > 0 ? resolve() : setTimeout(look, 10));
      look();
    }));
    await other.cancelWorkflow(handle.workflowId); // its NOTIFY finds no listener of `engine`
    expect(await within(10_000, "ctx.signal to abort", aborted.promise)).toMatchObject({ code: "WORKFLOW_CANCELLED" });
  });
});

