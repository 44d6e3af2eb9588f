import { once } from "node:events";
import { describe, expect, it } from "vitest";
import type { Engine, Notification } from "../src/index.js";
import { admin, collect, gate, openEngine, within } from "./support/engines.js";

/** Notifications an engine hears, and a way to wait for one that matches. */
function hear(engine: Engine) {
  const heard: Notification[] = [];
  const waiting = new Set<{ match: (n: Notification) => boolean; open: () => void }>();
  engine.on("notification", (n) => {
    heard.push(n);
    for (const w of waiting) {
      if (w.match(n)) {
        waiting.delete(w);
        w.open();
      }
    }
  });
  return {
    heard,
    next(match: (n: Notification) => boolean): Promise<void> {
      if (heard.some(match)) return Promise.resolve();
      const g = gate();
      waiting.add({ match, open: () => g.open() });
      return g.promise;
    },
  };
}

describe("readers are woken by NOTIFY", () => {
  it("a value written by another engine reaches a waiting reader well under a second, with no polling (heartbeat 10 min)", async () => {
    const reader = await openEngine({ heartbeatMs: 600_000 });
    const writer = await openEngine({ schema: reader.schema });
    const heard = hear(reader);
    const COUNT = 10;
    const turns = Array.from({ length: COUNT }, () => gate());
    const writtenAt: number[] = [];
    const wf = writer.workflow("remote", async (ctx) => {
      await ctx.writeStream("s", 0);
      for (let i = 1; i < COUNT; i++) {
        await turns[i]!.promise; // the reader has had i-1 and waits for i
        writtenAt[i] = performance.now();
        await ctx.writeStream("s", i);
      }
    });
    const h = await wf.start();

    const latencies: number[] = [];
    const seen: number[] = [];
    const reading = (async () => {
      for await (const value of reader.readStreamAsync<number>(h.workflowId, "s")) {
        if (value > 0) latencies.push(performance.now() - writtenAt[value]!);
        seen.push(value);
        // Nothing but microtasks runs between here and the reader parking for the next
        // value, while the write it allows needs a round trip: the reader is parked first,
        // and only a notification can wake it (the reader engine has no timer that could).
        turns[value + 1]?.open();
      }
    })();
    await within(10_000, "every value to reach the reader", reading);
    expect(seen).toEqual(Array.from({ length: COUNT }, (_, i) => i));
    expect(latencies).toHaveLength(COUNT - 1);
    expect(Math.max(...latencies)).toBeLessThan(1000);
    // The reader engine heard one notification per write (and the end of the workflow).
    await h.getResult();
    for (let i = 0; i < COUNT; i++) {
      expect(heard.heard).toContainEqual({ workflowId: h.workflowId, key: "s", offset: i, closed: false });
    }
  });

  it("after the listener's backend is killed, the engine reconnects and readers get every value written before, during and after, once each, in order", async () => {
    const reader = await openEngine();
    const writer = await openEngine({ schema: reader.schema });
    const errors: unknown[] = [];
    reader.on("error", (error) => errors.push(error));
    const phase1 = gate();
    const phase2 = gate();
    const phase3 = gate();
    const wrotePhase2 = gate();
    const wf = writer.workflow("through-a-kill", async (ctx) => {
      for (let i = 0; i < 10; i++) await ctx.writeStream("s", i);
      phase1.open();
      await phase2.promise;
      // Written while the listener is being killed and reconnects: not awaited one by
      // one, so they go out as fast as they can.
      await Promise.all(Array.from({ length: 20 }, (_, i) => ctx.writeStream("s", 10 + i)));
      wrotePhase2.open();
      await phase3.promise;
      for (let i = 30; i < 40; i++) await ctx.writeStream("s", i);
    });
    const h = await wf.start();

    const READERS = 10;
    const sawFirst = gate();
    let sawFirstCount = 0;
    const values = Array.from({ length: READERS }, async () => {
      const seen: number[] = [];
      for await (const value of reader.readStreamAsync<number>(h.workflowId, "s")) {
        seen.push(value);
        if (value === 9 && ++sawFirstCount === READERS) sawFirst.open();
      }
      return seen;
    });
    const entries = collect(reader.readStreamEntries<number>(h.workflowId, "s"));
    const fromMiddle = collect(reader.readStreamAsync<number>(h.workflowId, "s", { fromOffset: 25 }));
    await within(10_000, "the first ten values", Promise.all([phase1.promise, sawFirst.promise]));
    expect(reader.readerCount).toBe(READERS + 2);

    const pid = await reader.listenerPid();
    expect(pid).toEqual(expect.any(Number));
    const reconnected = once(reader, "reconnected");
    const [killed] = await admin<{ ok: boolean }[]>`select pg_terminate_backend(${pid!}) as ok`;
    expect(killed!.ok).toBe(true);
    phase2.open();
    await within(10_000, "the 'reconnected' event", reconnected);
    await within(10_000, "the writes made during the reconnect", wrotePhase2.promise);
    const newPid = await reader.listenerPid();
    expect(newPid).toEqual(expect.any(Number));
    expect(newPid).not.toBe(pid);
    // Still one listener for the reader engine (the writer engine, in the same schema,
    // has the same application_name: its listener is left out, like the killed one).
    const writerPid = await writer.listenerPid();
    const listeners = await admin<{ pid: number }[]>`
      select pid from pg_stat_activity
      where application_name = ${reader.applicationName("listener")} and pid <> ${pid!} and pid <> ${writerPid!}`;
    expect(listeners.map((l) => l.pid)).toEqual([newPid]);

    phase3.open(); // written after the reconnect
    const expected = Array.from({ length: 40 }, (_, i) => i);
    for (const seen of await within(10_000, "every reader to reach the close", Promise.all(values))) {
      expect(seen).toEqual(expected);
    }
    expect(await within(10_000, "the entries reader", entries)).toEqual(expected.map((value, offset) => ({ offset, value })));
    expect(await within(10_000, "the reader from offset 25", fromMiddle)).toEqual(expected.slice(25));
    expect(reader.readerCount).toBe(0);
    await h.getResult();
    // Losing the listener is not a failure anyone needs to handle.
    expect(errors).toEqual([]);
  });
});

describe("engines in different schemas of one database", () => {
  it("with the same workflow ids, each reads only its own values, and a notification in one never wakes the other", async () => {
    const x = await openEngine();
    const y = await openEngine();
    expect(x.schema).not.toBe(y.schema);
    const xHeard = hear(x);
    const yHeard = hear(y);
    const id = "same-id-in-both";

    const xGo = gate();
    const xEnd = gate();
    const yWrote = gate();
    const yGo = gate();
    const wfX = x.workflow("shared-name", async (ctx) => {
      await ctx.writeStream("s", "x:0");
      await xGo.promise;
      await ctx.writeStream("s", "x:1");
      await xEnd.promise;
      return "x";
    });
    const wfY = y.workflow("shared-name", async (ctx) => {
      for (let i = 0; i < 3; i++) await ctx.writeStream("s", `y:${i}`);
      yWrote.open();
      await yGo.promise;
      return "y";
    });
    const hx = await wfX.start(undefined, { workflowId: id });
    // A reader in X, on the very (workflow id, key) that Y is about to write.
    const xValues: string[] = [];
    const xReading = (async () => {
      for await (const v of x.readStreamAsync<string>(id, "s")) xValues.push(v);
    })();
    await within(5000, "X's first notification", xHeard.next((n) => "key" in n && n.offset === 0));
    const hy = await wfY.start(undefined, { workflowId: id });
    await within(5000, "Y's writes", yWrote.promise);
    await within(5000, "Y to hear its last write", yHeard.next((n) => "key" in n && n.offset === 2));

    // X's listener reads the server's notification queue in commit order: once it hears
    // X's next write, committed after all of Y's, it has passed Y's notifications.
    xGo.open();
    await within(5000, "X to hear its second write", xHeard.next((n) => "key" in n && n.offset === 1));
    expect(xHeard.heard).toEqual([
      { workflowId: id, key: "s", offset: 0, closed: false },
      { workflowId: id, key: "s", offset: 1, closed: false },
    ]);
    xEnd.open();
    await within(5000, "X's reader", xReading);
    expect(xValues).toEqual(["x:0", "x:1"]);
    expect(await hx.getResult()).toBe("x");
    // X's end: its status and the close of "s" (offset 2), one transaction.
    await within(5000, "X to hear its end", Promise.all([
      xHeard.next((n) => "status" in n),
      xHeard.next((n) => "key" in n && n.offset === 2),
    ]));

    // And the other way round: Y ends after all of X's notifications, and hears only its own.
    yGo.open();
    expect(await hy.getResult()).toBe("y");
    await within(5000, "Y to hear its end", Promise.all([
      yHeard.next((n) => "status" in n),
      yHeard.next((n) => "key" in n && n.offset === 3),
    ]));
    const ended = (offset: number) => [
      ...Array.from({ length: offset }, (_, i) => ({ workflowId: id, key: "s", offset: i, closed: false })),
      { workflowId: id, status: "SUCCESS" },
      { workflowId: id, key: "s", offset, closed: true }, // the close
    ];
    expect(yHeard.heard).toHaveLength(5);
    expect(yHeard.heard).toEqual(expect.arrayContaining(ended(3)));
    expect(xHeard.heard).toHaveLength(4);
    expect(xHeard.heard).toEqual(expect.arrayContaining(ended(2)));

    expect(await x.readStream(id, "s")).toEqual({ values: ["x:0", "x:1"], closed: true });
    expect(await y.readStream(id, "s")).toEqual({ values: ["y:0", "y:1", "y:2"], closed: true });
    expect(await x.getWorkflow(id)).toMatchObject({ status: "SUCCESS", output: "x" });
    expect(await y.getWorkflow(id)).toMatchObject({ status: "SUCCESS", output: "y" });
  });
});
