import { describe, expect, it } from "vitest";
import { StreamClosedError, WorkflowCancelledError, type Engine } from "../src/index.js";
import { admin, collect, gate, openEngine, within } from "./support/engines.js";

/** How long a blocked reader may take to be released once the workflow ends. */
const PROMPTLY = 5000;

interface Snapshot {
  status: string;
  streams: number;
  closes: number;
}

/** One statement, so one snapshot: the status and, as of the same instant, the streams and their closes. */
async function snapshot(engine: Engine, workflowId: string): Promise<Snapshot> {
  const [row] = await admin.unsafe<Snapshot[]>(
    `select s.status,
       (select count(distinct key)::int from "${engine.schema}".stream_entries e where e.workflow_id = s.workflow_id) as streams,
       (select count(*)::int from "${engine.schema}".stream_entries e where e.workflow_id = s.workflow_id and e.closed) as closes
     from "${engine.schema}".workflow_status s where s.workflow_id = $1`,
    [workflowId],
  );
  return row!;
}

/**
 * Observes the workflow's rows back to back until its status is terminal, and returns
 * every snapshot that showed a terminal status with a stream still open (there must be
 * none: the closes commit with the status change).
 */
async function observeUntilTerminal(engine: Engine, workflowId: string): Promise<{ torn: Snapshot[]; last: Snapshot }> {
  const torn: Snapshot[] = [];
  for (;;) {
    const s = await snapshot(engine, workflowId);
    if (s.status === "PENDING") continue;
    if (s.closes !== s.streams) torn.push(s);
    return { torn, last: s };
  }
}

async function entriesOf(engine: Engine, workflowId: string) {
  return admin.unsafe<{ key: string; offset: string; closed: boolean }[]>(
    `select key, "offset"::text, closed from "${engine.schema}".stream_entries where workflow_id = $1 order by key, "offset"`,
    [workflowId],
  );
}

type Ending = "succeeds" | "fails" | "is cancelled" | "is cancelled from another engine";

/**
 * A workflow writes to "a" (two values) and "b" (one), closes "c" itself, never touches
 * "never", and then waits. Readers block on every key; the workflow then ends as asked.
 */
async function endWithBlockedReaders(ending: Ending) {
  const engine = await openEngine();
  const wrote = gate();
  const end = gate();
  const afterCancel = gate<unknown>();
  const wf = engine.workflow("ends", async (ctx) => {
    await ctx.writeStream("a", 1);
    await ctx.writeStream("a", 2);
    await ctx.writeStream("b", "x");
    await ctx.closeStream("c");
    wrote.open();
    await end.promise;
    if (ending === "fails") throw new Error("boom");
    if (ending.startsWith("is cancelled")) {
      // The runner learns of the cancel at its next write, which is refused.
      afterCancel.open(await ctx.writeStream("a", 3).then(() => "stored", (error: unknown) => error));
      return "not reached";
    }
    return "done";
  });
  const h = await wf.start();
  await wrote.promise;

  // readStream and an iterator on "a" share their first read; once the iterator has had
  // both values, the readStream has had them too and waits for more.
  const readA = engine.readStream<number>(h.workflowId, "a");
  const iterA = engine.readStreamAsync<number>(h.workflowId, "a");
  expect(await iterA.next()).toEqual({ done: false, value: 1 });
  expect(await iterA.next()).toEqual({ done: false, value: 2 });
  const restA = collect({ [Symbol.asyncIterator]: () => iterA });
  // An entries reader on "b" that has had its value and waits for the next.
  const iterB = engine.readStreamEntries<string>(h.workflowId, "b");
  expect(await iterB.next()).toEqual({ done: false, value: { offset: 0, value: "x" } });
  const restB = collect({ [Symbol.asyncIterator]: () => iterB });
  // Readers of a key the workflow never wrote.
  const readNever = engine.readStream(h.workflowId, "never");
  const iterNever = collect(engine.readStreamAsync(h.workflowId, "never"));
  expect(engine.readerCount).toBe(5);

  const settled = { value: false };
  void Promise.allSettled([readA, restA, restB, readNever, iterNever]).then(() => (settled.value = true));
  expect(settled.value).toBe(false);
  expect(await snapshot(engine, h.workflowId)).toEqual({ status: "PENDING", streams: 3, closes: 1 });

  const other = ending === "is cancelled from another engine" ? await openEngine({ schema: engine.schema }) : undefined;
  const observed = observeUntilTerminal(engine, h.workflowId);
  const started = performance.now();
  if (ending === "is cancelled") {
    await engine.cancelWorkflow(h.workflowId);
  } else if (other) {
    await other.cancelWorkflow(h.workflowId);
  } else {
    end.open();
  }
  const released = await within(PROMPTLY, "blocked readers to be released", Promise.all([readA, restA, restB, readNever, iterNever]));
  const releaseMs = performance.now() - started;
  const { torn, last } = await within(PROMPTLY, "a terminal status", observed);
  return { engine, h, end, afterCancel, released, releaseMs, torn, last };
}

describe("a workflow's unclosed streams are closed when it ends, and blocked readers are released", () => {
  it.each<[Ending, string]>([
    ["succeeds", "SUCCESS"],
    ["fails", "ERROR"],
    ["is cancelled", "CANCELLED"],
    ["is cancelled from another engine", "CANCELLED"],
  ])("when the workflow %s", async (ending, status) => {
    const { engine, h, end, afterCancel, released, releaseMs, torn, last } = await endWithBlockedReaders(ending);
    const [readA, restA, restB, readNever, iterNever] = released;
    expect(readA).toEqual({ values: [1, 2], closed: true });
    expect(restA).toEqual([]);
    expect(restB).toEqual([]);
    expect(readNever).toEqual({ values: [], closed: true });
    expect(iterNever).toEqual([]);
    expect(releaseMs).toBeLessThan(PROMPTLY);
    expect(engine.readerCount).toBe(0);

    // The closes are in the status change's transaction: no snapshot ever showed the
    // terminal status with a stream still open.
    expect(torn).toEqual([]);
    expect(last).toEqual({ status, streams: 3, closes: 3 });
    // One close per stream, right after its last value; "c" (closed by the workflow) is not closed twice.
    expect(await entriesOf(engine, h.workflowId)).toEqual([
      { key: "a", offset: "0", closed: false },
      { key: "a", offset: "1", closed: false },
      { key: "a", offset: "2", closed: true },
      { key: "b", offset: "0", closed: false },
      { key: "b", offset: "1", closed: true },
      { key: "c", offset: "0", closed: true },
    ]);

    if (ending === "succeeds") {
      expect(await h.getResult()).toBe("done");
    } else if (ending === "fails") {
      await expect(h.getResult()).rejects.toThrow("boom");
    } else {
      await expect(h.getResult()).rejects.toBeInstanceOf(WorkflowCancelledError);
      // Let the cancelled run go on: its next write is refused and stores nothing.
      end.open();
      const refusal = await within(PROMPTLY, "the cancelled run's write to settle", afterCancel.promise);
      expect(refusal).toBeInstanceOf(WorkflowCancelledError);
      expect(await entriesOf(engine, h.workflowId)).toHaveLength(6);
      expect(await engine.getWorkflow(h.workflowId)).toMatchObject({ status: "CANCELLED" });
    }
    // Late readers see the same closed streams.
    expect(await engine.readStream(h.workflowId, "a")).toEqual({ values: [1, 2], closed: true });
    expect(await engine.readStream(h.workflowId, "b", { wait: false })).toEqual({ values: ["x"], closed: true });
  });
});

describe("writing after closeStream", () => {
  it("rejects with StreamClosedError and stores nothing; other keys and the workflow carry on", async () => {
    const engine = await openEngine();
    const closed = gate();
    const retry = gate();
    const outcome = gate<{ write: unknown; closeAgain: unknown; otherKey: unknown }>();
    const wf = engine.workflow("close-then-write", async (ctx) => {
      await ctx.writeStream("s", "before");
      await ctx.closeStream("s");
      closed.open();
      await retry.promise;
      const write = await ctx.writeStream("s", "after").then(() => "stored", (error: unknown) => error);
      const closeAgain = await ctx.closeStream("s").then(() => "ok", (error: unknown) => error);
      const otherKey = await ctx.writeStream("t", "still fine").then(() => "stored", (error: unknown) => error);
      outcome.open({ write, closeAgain, otherKey });
      return "finished";
    });
    const h = await wf.start();
    await closed.promise;
    const count = async () => (await entriesOf(engine, h.workflowId)).filter((e) => e.key === "s").length;
    expect(await count()).toBe(2); // "before" and the close

    retry.open();
    const { write, closeAgain, otherKey } = await within(PROMPTLY, "the workflow's writes after the close", outcome.promise);
    expect(write).toBeInstanceOf(StreamClosedError);
    expect(write).toMatchObject({ code: "STREAM_CLOSED", workflowId: h.workflowId, key: "s" });
    expect(closeAgain).toBe("ok"); // closing twice is harmless
    expect(otherKey).toBe("stored");
    expect(await count()).toBe(2);

    expect(await h.getResult()).toBe("finished");
    expect(await count()).toBe(2); // finishing adds no second close
    expect(await engine.readStream(h.workflowId, "s")).toEqual({ values: ["before"], closed: true });
    expect(await engine.readStream(h.workflowId, "t")).toEqual({ values: ["still fine"], closed: true });
  });
});
