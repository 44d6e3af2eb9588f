import { describe, expect, it } from "vitest";
import { connect } from "../src/db/connect.js";
import { StreamWriter } from "../src/streams/writer.js";
import { admin, databaseUrl, openEngine, within } from "./support/engines.js";

describe("the group-commit writer", () => {
  it("commits an append made just as the previous flush ends", async () => {
    const engine = await openEngine();
    await admin.unsafe(
      `insert into "${engine.schema}".workflow_status (workflow_id, name, status, executor_id)
       select 'w' || i, 'raw', 'PENDING', 'local' from generate_series(0, 2) i`,
    );
    const sql = connect({ url: databaseUrl, schema: engine.schema, role: "pool", max: 1 });
    await sql`select 1`; // as Engine.open does: postgres.js learns array types on first connect
    const writer = new StreamWriter(sql, 5_000, async () => new Error("refused"));
    const next = new Map<string, number>();
    const append = (workflowId: string) => {
      const offset = next.get(workflowId) ?? 0;
      next.set(workflowId, offset + 1);
      return writer.append({ workflowId, key: "k", offset, json: String(offset), closed: false, writeSeq: null });
    };
    try {
      // Awaiting a Promise.all resumes a few microtasks after the batch resolved: the
      // single append that follows lands right where the flush winds down.
      const rounds = async (workflowId: string) => {
        for (let r = 0; r < 30; r++) {
          await Promise.all([append(workflowId), append(workflowId)]);
          await append(workflowId);
        }
      };
      await within(20_000, "every append to commit", Promise.all(["w0", "w1", "w2"].map(rounds)));
      const [row] = await admin.unsafe(`select count(*)::int as n from "${engine.schema}".stream_entries`);
      expect(row!.n).toBe(3 * 90);
    } finally {
      await sql.end();
    }
  });

  it("sends writes made in the same tick as one batch", async () => {
    const engine = await openEngine();
    const seen: number[] = [];
    engine.on("notification", (n) => {
      if ("offset" in n) seen.push(n.offset);
    });
    const wf = engine.workflow("same-tick", async (ctx) => {
      await Promise.all(Array.from({ length: 10 }, (_, i) => ctx.writeStream("k", i)));
    });
    const h = await wf.start();
    await h.getResult();
    // One statement wrote offsets 0..9: its trigger announced only the highest. (The
    // close, offset 10, commits with the status change and may be heard after getResult.)
    expect(seen.filter((offset) => offset < 10)).toEqual([9]);
  });
});
