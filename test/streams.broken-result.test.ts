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
  it("a reader delivers every entry once, in order, and getStatus keeps answering, while the pool's busy backend is killed again and again", async () => {
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

    let reading = true;
    let kills = 0;
    let next = 0;
    // Kills the pool's backend while it runs a statement (a page read or a status
    // query), so kills land mid-result; then lets the reader gain 1,000 entries.
    const killer = (async () => {
      let killedAt = -Infinity;
      while (reading && kills < 20) {
        if (next - killedAt < 1000) {
          await new Promise((resolve) => setImmediate(resolve));
          continue;
        }
        const killed = await admin`
          select pg_terminate_backend(pid) as ok from pg_stat_activity
          where application_name = ${engine.applicationName("pool")} and state = 'active'`;
        if (killed.some((r) => r.ok)) {
          kills++;
          killedAt = next;
        }
      }
    })();
    // Asks for the status on the same pool all along: a broken result must never say "not found".
    const statuses: string[] = [];
    const asker = (async () => {
      while (reading) statuses.push(await engine.retrieveWorkflow(handle.workflowId).getStatus());
    })();
    try {
      for await (const entry of engine.readStreamEntries<{ i: number }>(handle.workflowId, "s")) {
        expect(entry.offset).toBe(next);
        expect(entry.value.i).toBe(next);
        next++;
      }
    } finally {
      reading = false;
      await Promise.all([killer, asker]);
    }
    expect(next).toBe(COUNT);
    expect(kills).toBeGreaterThan(0);
    expect(new Set(statuses)).toEqual(new Set(["SUCCESS"]));
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
