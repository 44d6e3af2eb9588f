// A result from the driver is whole or it is an error (DESIGN invariant 11). When
// Postgres ends a reader's query connection in the middle of a page, the reader re-reads
// from its offset and the next call on that connection is answered in full: the reader
// used to die with "Cannot read properties of undefined (reading 'closed_before')" and
// getStatus() of an existing workflow to reject with WORKFLOW_NOT_FOUND (postgres.js
// left holes in the next result; patched in patches/, and refused by db/rows.ts).
import { describe, expect, it } from "vitest";
import { isConnectionError } from "../src/db/connect.js";
import { BrokenResultError, whole } from "../src/db/rows.js";
import { admin, openEngine, within } from "./support/engines.js";

describe("a query connection terminated mid-result", () => {
  it("readers deliver every entry once, in order, and getStatus answers, through 12 terminations mid-page", async () => {
    const engine = await openEngine({ poolSize: 1 });
    const COUNT = 30_000;
    const wf = engine.workflow("long", async (ctx) => {
      for (let i = 0; i < COUNT; i += 1000) {
        await Promise.all(Array.from({ length: 1000 }, (_, j) => ctx.writeStream("s", { i: i + j, pad: "p".repeat(200) })));
      }
      return "written";
    });
    const handle = await wf.start();
    expect(await within(60_000, "the writes", handle.getResult())).toBe("written");

    let next = 0;
    let kills = 0;
    for await (const entry of engine.readStreamEntries<{ i: number }>(handle.workflowId, "s")) {
      expect(entry.offset).toBe(next);
      expect(entry.value.i).toBe(next);
      next++;
      // Every 2,500 entries (mid-way through the reader's in-memory page), kill the pool's
      // backend while it sends the next page, then ask for the status on the same pool.
      if (next % 2500 === 1250 && kills < 12) {
        const killing = admin`
          select pg_terminate_backend(pid) from pg_stat_activity
          where application_name = ${engine.applicationName("pool")} and pid <> pg_backend_pid()`;
        await killing;
        kills++;
        expect(await engine.retrieveWorkflow(handle.workflowId).getStatus()).toBe("SUCCESS");
      }
    }
    expect(next).toBe(COUNT);
    expect(kills).toBe(12);
    expect(engine.readerCount).toBe(0);
  }, 120_000);
});

describe("whole()", () => {
  it("passes a whole result through and refuses one with a hole as a transient failure", () => {
    const rows = [{ a: 1 }, { a: 2 }];
    expect(whole(rows)).toBe(rows);
    const sparse: { a: number }[] = [];
    sparse[2] = { a: 3 }; // leading holes, as postgres.js 3.4.9 returned them
    let error: unknown;
    try {
      whole(sparse);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(BrokenResultError);
    expect(isConnectionError(error)).toBe(true); // retried like a dropped connection
    expect((error as Error).message).toMatch(/hole at row 0 of 3/);
  });
});
