// A reader that asked for an offset past a stream's explicit close ends at the close, as
// a reader at or before it does, even while the workflow runs on with other work. It
// used to wait for the whole workflow to end: only the workflow's end woke it.
import { describe, expect, it } from "vitest";
import { streamResponse } from "../src/http/index.js";
import { collect, gate, openEngine, within } from "./support/engines.js";

/**
 * A workflow that writes 0..4 to "s", waits for `letClose`, closes it (the close is entry
 * 5), then waits for `release` with other work to do.
 */
async function closedButRunning() {
  const engine = await openEngine();
  const letClose = gate();
  const release = gate();
  const closed = gate();
  const wf = engine.workflow("close-then-work", async (ctx) => {
    for (let i = 0; i < 5; i++) await ctx.writeStream("s", i);
    await letClose.promise;
    await ctx.closeStream("s");
    closed.open();
    await release.promise; // other work: the workflow stays PENDING
    await ctx.writeStream("other", "still running");
    return "done";
  });
  /**
   * Lets the close happen once readers started now have done their first read: a reader
   * from 0 started after them has seen all five values (its read went out with theirs,
   * or after), so they are parked, and only the close's notification can end them.
   */
  const closeAfterFirstReads = async (id: string) => {
    const companion = engine.readStreamAsync(id, "s")[Symbol.asyncIterator]();
    for (let i = 0; i < 5; i++) await within(5000, "the companion reader", companion.next());
    letClose.open();
    await within(5000, "the close", closed.promise);
    await companion.return?.();
  };
  return { engine, wf, release, closeAfterFirstReads };
}

const PAST = [6, 1000, Number.MAX_SAFE_INTEGER];

describe("a reader past an explicit close", () => {
  it.each(PAST)("readStreamAsync from %d, started before the close, ends at the close", async (fromOffset) => {
    const { engine, wf, release, closeAfterFirstReads } = await closedButRunning();
    const handle = await wf.start();
    const id = handle.workflowId;
    const reading = collect(engine.readStreamAsync(id, "s", { fromOffset }));
    await closeAfterFirstReads(id);
    expect(await within(5000, "the reader past the close to end", reading)).toEqual([]);
    expect(await handle.getStatus()).toBe("PENDING");
    release.open();
    expect(await handle.getResult()).toBe("done");
    expect(engine.readerCount).toBe(0);
  });

  it.each(PAST)("readStream (waiting) from %d returns at the close while the workflow runs", async (fromOffset) => {
    const { engine, wf, release, closeAfterFirstReads } = await closedButRunning();
    const handle = await wf.start();
    const read = engine.readStream(handle.workflowId, "s", { fromOffset });
    await closeAfterFirstReads(handle.workflowId);
    expect(await within(5000, "readStream past the close", read)).toEqual({ values: [], closed: true });
    release.open();
    await handle.getResult();
  });

  it("readers at, before and past the close, started before and after it, all end at the close", async () => {
    const { engine, wf, release, closeAfterFirstReads } = await closedButRunning();
    const handle = await wf.start();
    const id = handle.workflowId;
    const offsets = [0, 3, 5, 6, 1000, Number.MAX_SAFE_INTEGER];
    const early = offsets.map((fromOffset) => collect(engine.readStreamAsync(id, "s", { fromOffset })));
    await closeAfterFirstReads(id);
    const late = offsets.map((fromOffset) => collect(engine.readStreamAsync(id, "s", { fromOffset })));
    const expected = offsets.map((from) => [0, 1, 2, 3, 4].slice(Math.min(from, 5)));
    expect(await within(5000, "early readers", Promise.all(early))).toEqual(expected);
    expect(await within(5000, "late readers", Promise.all(late))).toEqual(expected);
    release.open();
    await handle.getResult();
  });

  it("an SSE client whose Last-Event-ID is at or past the close gets the close, not a hang", async () => {
    const { engine, wf, release, closeAfterFirstReads } = await closedButRunning();
    const handle = await wf.start();
    const id = handle.workflowId;
    const request = (lastEventId: string) =>
      new Request(`http://test/streams/${id}/s`, { headers: { "last-event-id": lastEventId } });
    // Connected before the close: one resumes past the close's offset (5), one at it.
    const before = streamResponse(engine, { workflowId: id, key: "s", request: request("5"), authorize: () => true });
    const atClose = streamResponse(engine, { workflowId: id, key: "s", request: request("4"), authorize: () => true });
    const atCloseBody = atClose.then((response) => response.text());
    const beforeBody = before.then((response) => response.text());
    await Promise.all([before, atClose]); // their readers have started
    await closeAfterFirstReads(id);
    const after = await streamResponse(engine, { workflowId: id, key: "s", request: request("1000"), authorize: () => true });
    const bodies = await within(5000, "the SSE bodies", Promise.all([beforeBody, atCloseBody, after.text()]));
    for (const body of bodies) {
      expect(body).toBe("event: close\ndata:\n\n");
    }
    release.open();
    await handle.getResult();
  });
});
