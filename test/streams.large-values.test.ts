// Any number of values that are each within maxValueBytes are stored and read back,
// however many are written at once. (520 concurrent 1 MiB writes used to go out as one
// batch whose text[] parameter outgrew V8's longest string: every write rejected with a
// RangeError and the workflow ended in ERROR.) Readers page them by bytes as well as by
// count, so a reader holds a few large values at a time, never thousands.
import { describe, expect, it } from "vitest";
import { connect } from "../src/db/connect.js";
import { SerializationError } from "../src/index.js";
import { MAX_PAGE_BYTES, readPage } from "../src/streams/pageReads.js";
import { admin, databaseUrl, openEngine, within } from "./support/engines.js";

const MiB = 1024 * 1024;

/** A string whose JSON form is exactly `bytes` bytes, starting with its index. */
function valueOf(i: number, bytes: number): string {
  const head = `${i}:`;
  return head + "x".repeat(bytes - 2 - head.length);
}

describe("many large values at once", () => {
  it("520 concurrent writes of 1 MiB each (exactly maxValueBytes) are all stored, and a reader gets them in order", async () => {
    const engine = await openEngine();
    const COUNT = 520;
    const wf = engine.workflow("big-writes", async (ctx) => {
      await Promise.all(Array.from({ length: COUNT }, (_, i) => ctx.writeStream("big", valueOf(i, MiB))));
      return COUNT;
    });
    const handle = await wf.start();
    expect(await within(120_000, "the workflow", handle.getResult())).toBe(COUNT);
    const [row] = await admin.unsafe<{ n: number; max: number }[]>(
      `select count(*)::int as n, max(octet_length(value::text))::int as max from "${engine.schema}".stream_entries
       where workflow_id = $1 and not closed`,
      [handle.workflowId],
    );
    expect(row).toEqual({ n: COUNT, max: MiB });
    // Read back without keeping the values: each in order, whole.
    let next = 0;
    for await (const entry of engine.readStreamEntries<string>(handle.workflowId, "big")) {
      expect(entry.offset).toBe(next);
      expect(entry.value.length).toBe(MiB - 2);
      expect(entry.value.startsWith(`${next}:`)).toBe(true);
      next++;
    }
    expect(next).toBe(COUNT);
  }, 180_000);

  it("one byte past maxValueBytes is refused by name, and nothing is written", async () => {
    const engine = await openEngine({ maxValueBytes: 4096 });
    const wf = engine.workflow("edge", async (ctx) => {
      await ctx.writeStream("s", valueOf(0, 4096));
      const error = await ctx.writeStream("s", valueOf(1, 4097)).then(() => undefined, (e: unknown) => e);
      return error instanceof SerializationError ? error.message : "no error";
    });
    const handle = await wf.start();
    expect(await handle.getResult()).toMatch(/4097 bytes as JSON; the limit is 4096 \(option maxValueBytes\)/);
    expect((await engine.readStream<string>(handle.workflowId, "s")).values.map((v) => v.length)).toEqual([4094]);
  });

  it("a page of 1 MiB values holds about MAX_PAGE_BYTES of them (then says more may follow), not 2,000", async () => {
    const engine = await openEngine();
    const COUNT = 40;
    const wf = engine.workflow("paged", async (ctx) => {
      for (let i = 0; i < COUNT; i += 10) {
        await Promise.all(Array.from({ length: 10 }, (_, j) => ctx.writeStream("big", valueOf(i + j, MiB))));
      }
    });
    const handle = await wf.start();
    await handle.getResult();
    const sql = connect({ url: databaseUrl, schema: engine.schema, role: "pool", max: 1 });
    try {
      const perPage = Math.ceil(MAX_PAGE_BYTES / MiB);
      const seen: number[] = [];
      for (let from = 0; ;) {
        const page = await readPage(sql, handle.workflowId, "big", from, 2000);
        expect(page.entries.length).toBeLessThanOrEqual(perPage + 1);
        seen.push(...page.entries.map((e) => e.offset));
        from += page.entries.length;
        if (!page.full) {
          expect(page.closed).toBe(true);
          break;
        }
      }
      expect(seen).toEqual(Array.from({ length: COUNT }, (_, i) => i));
      // A value larger than the whole budget still comes, alone.
      expect((await readPage(sql, handle.workflowId, "big", 3, 1)).entries.map((e) => e.offset)).toEqual([3]);
    } finally {
      await sql.end();
    }
    const { values } = await engine.readStream<string>(handle.workflowId, "big", { wait: false });
    expect(values.map((v) => v.slice(0, v.indexOf(":")))).toEqual(Array.from({ length: COUNT }, (_, i) => String(i)));
  }, 60_000);
});
