// Edge matrix 3 at the default maxValueBytes (1 MiB): 300 stream values of exactly 1 MiB
// written at once are all stored and read back in order; values of 1 MiB − 1, 1 MiB and
// 1 MiB + 1 bytes as a stream value, a step output, a workflow input and a workflow
// output. Values are made from their index when needed and compared one at a time, so
// the test never holds all of them twice (the writer's queue holds their JSON once).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SerializationError, type Engine } from "../src/index.js";
import { counts, expectRefusal, outcome, startProbe, type Probe } from "./edges.support.js";
import { admin, openEngine, within } from "./support/engines.js";

const MIB = 1024 * 1024;

/** A string whose JSON is exactly `bytes` bytes, distinct per `i`, with 3-byte characters in it. */
function big(i: number, bytes = MIB): string {
  const head = `${String(i).padStart(4, "0")}|${"€".repeat(100)}|`; // 4 + 1 + 300 + 1 bytes
  return head + "x".repeat(bytes - 2 - Buffer.byteLength(head));
}

let engine: Engine;
let probe: Probe;

beforeAll(async () => {
  engine = await openEngine({ poolSize: 4 }); // maxValueBytes: the default, 1 MiB
  probe = await startProbe(engine);
});
afterAll(() => probe.stop());

describe("300 concurrent stream values of exactly 1 MiB", () => {
  it("are all stored and read back, in the order they were written", async () => {
    expect(Buffer.byteLength(JSON.stringify(big(0)))).toBe(MIB);
    const before = await counts(engine.schema);
    const started = Date.now();
    const written = await probe.run((ctx) => Promise.all(Array.from({ length: 300 }, (_, i) => ctx.writeStream("big", big(i)))), 170_000);
    console.log(`300 × 1 MiB written in ${Date.now() - started} ms`);
    expect(written.ok, String((written as { error?: unknown }).error)).toBe(true);
    expect(await counts(engine.schema)).toEqual({ ...before, entries: before.entries + 300 });
    // Stored as written: 1 MiB of JSON each (jsonb's text of a string is its JSON).
    const [sizes] = await admin.unsafe(
      `select count(*)::int as n, min(octet_length(value::text))::int as min, max(octet_length(value::text))::int as max
       from "${engine.schema}".stream_entries where workflow_id = $1 and key = 'big'`,
      [probe.workflowId],
    );
    expect(sizes).toEqual({ n: 300, min: MIB, max: MIB });
    // Read back one at a time, each compared with its regenerated self.
    let next = 0;
    const reader = engine.readStreamEntries<string>(probe.workflowId, "big");
    for await (const { offset, value } of reader) {
      expect(offset).toBe(next);
      if (value !== big(next)) throw new Error(`entry ${offset} differs from the value written at ${next}`);
      if (++next === 300) break;
    }
    expect(next).toBe(300);
  }, 180_000);
});

describe("1 MiB − 1, 1 MiB and 1 MiB + 1 bytes through each channel", () => {
  const targets: [string, number][] = [["1 MiB - 1", MIB - 1], ["1 MiB", MIB], ["1 MiB + 1", MIB + 1]];

  it.each(targets)("a stream value of %s", async (label, bytes) => {
    const before = await counts(engine.schema);
    const result = await probe.run((ctx) => ctx.writeStream(`one ${label}`, big(1, bytes)));
    if (bytes <= MIB) {
      expect(result.ok).toBe(true);
      const { values } = await engine.readStream<string>(probe.workflowId, `one ${label}`, { wait: false });
      expect(values.length === 1 && values[0] === big(1, bytes)).toBe(true);
    } else {
      expectRefusal(result, SerializationError, "SERIALIZATION", "maxValueBytes", String(bytes));
      expect(await counts(engine.schema)).toEqual(before);
    }
  });

  it.each(targets)("a step output of %s", async (label, bytes) => {
    const result = await probe.run((ctx) => ctx.step(`step ${label}`, () => big(2, bytes)));
    const [row] = await admin.unsafe(
      `select octet_length(output::text)::int as bytes, error->>'name' as error
       from "${engine.schema}".step_outputs where workflow_id = $1 and name = $2`,
      [probe.workflowId, `step ${label}`],
    );
    if (bytes <= MIB) {
      expect(result.ok && result.value === big(2, bytes)).toBe(true);
      expect(row).toEqual({ bytes, error: null });
    } else {
      expectRefusal(result, SerializationError, "SERIALIZATION", "maxValueBytes");
      expect(row).toEqual({ bytes: null, error: "SerializationError" });
    }
  });

  it.each(targets)("a workflow input and a workflow output of %s", async (label, bytes) => {
    const echo = engine.workflow(`echo ${label}`, async (_ctx, input: string) => input);
    const before = await counts(engine.schema);
    const started = await outcome(() => echo.start(big(3, bytes), { workflowId: `input ${label}` }));
    if (bytes > MIB) {
      expectRefusal(started, SerializationError, "SERIALIZATION", "maxValueBytes");
      expect(await counts(engine.schema)).toEqual(before);
    } else {
      const result = await within(30_000, "echo", engine.retrieveWorkflow<string>(`input ${label}`).getResult());
      expect(result === big(3, bytes)).toBe(true);
    }
    const makes = engine.workflow(`output ${label}`, async () => big(4, bytes));
    const handle = await makes.start(undefined, { workflowId: `output ${label}` });
    const result = await outcome(() => within(30_000, "output", handle.getResult()));
    if (bytes <= MIB) {
      expect(result.ok && result.value === big(4, bytes)).toBe(true);
    } else {
      expectRefusal(result, SerializationError, "SERIALIZATION", "maxValueBytes");
      expect(await handle.getStatus()).toBe("ERROR");
    }
  });
});
