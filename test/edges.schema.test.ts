// Edge matrix 2, schema names. Each case runs in a database of its own (created and
// dropped by this file), so names like "public" or "information_schema" touch nothing
// shared. A name accepted gets the engine's tables in exactly that schema, and a workflow
// runs there with a live reader woken on its channel; a name refused is an
// InvalidArgumentError naming the schema, before any object is created in the database.
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine, InvalidArgumentError } from "../src/index.js";
import { expectRefusal, outcome, scratchDatabase } from "./edges.support.js";
import { collect, within } from "./support/engines.js";

let scratch: { url: string; drop: () => Promise<void> };
let sql: postgres.Sql;

beforeAll(async () => {
  scratch = await scratchDatabase();
  sql = postgres(scratch.url, { max: 1, onnotice: () => {} });
});
afterAll(async () => {
  await sql?.end();
  await scratch?.drop();
});

const ACCEPTED: [label: string, schema: string][] = [
  ["1 character", "a"],
  ["an underscore alone", "_"],
  ["50 characters (the limit)", "s".repeat(50)],
  ["an underscore inside", "a_b"],
  ["digits after the first character", "x123"],
  ["a reserved SQL keyword", "select"],
  ["the keyword user", "user"],
  ["public", "public"],
  ["the default, pgtide", "pgtide"],
  ["the pgtide prefix", "pgtide_other"],
  ["the __drizzle prefix", "__drizzle"],
  ["drizzle (drizzle-kit's own default schema)", "drizzle"],
];

const REFUSED: [label: string, schema: string][] = [
  ["empty", ""],
  ["51 characters", "s".repeat(51)],
  ["200 characters", "s".repeat(200)],
  ["201 characters", "s".repeat(201)],
  ["200 four-byte emoji", "🦀".repeat(200)],
  ["upper case", "Abc"],
  ["a digit first", "1abc"],
  ["a double quote", 'a"b'],
  ["a single quote", "a'b"],
  ["a backslash", "a\\b"],
  ["a percent sign", "a%b"],
  ["dollar signs", "a$$"],
  ["a dot", "a.b"],
  ["a space inside", "a b"],
  ["a space at the start", " a"],
  ["a space at the end", "a "],
  ["é composed", "\u00e9"],
  ["é decomposed", "e\u0301"],
  ["a zero-width space", "a\u200bb"],
  ["a right-to-left mark", "\u200fa"],
  ["a lone surrogate", "a\ud800"],
  ["NUL", "a\u0000"],
  ["a newline", "a\n"],
  ["an SQL injection", "a; drop schema public cascade"],
  // Postgres reserves pg_ for its own schemas ("unacceptable schema name"), and
  // information_schema is the SQL standard's: neither may receive pgtide's tables.
  ["the pg_ prefix", "pg_edges"],
  ["pg_temp", "pg_temp"],
  ["pg_catalog", "pg_catalog"],
  ["pg_toast", "pg_toast"],
  ["information_schema", "information_schema"],
];

/** Every schema and relation in the scratch database. */
async function objects(): Promise<string[]> {
  const rows = await sql<{ name: string }[]>`
    select n.nspname || '.' || coalesce(c.relname, '') as name
    from pg_namespace n left join pg_class c on c.relnamespace = n.oid
    order by 1`;
  return rows.map((r) => r.name);
}

describe("schema names accepted: the engine lives in exactly that schema", () => {
  it.each(ACCEPTED)("%s", async (_, schema) => {
    const engine = await Engine.open({ databaseUrl: scratch.url, schema, poolSize: 1, heartbeatMs: 1000 });
    try {
      expect(engine.schema).toBe(schema);
      const tables = await sql<{ t: string }[]>`
        select tablename as t from pg_tables where schemaname = ${schema} order by 1`;
      expect(tables.map((r) => r.t)).toEqual(expect.arrayContaining(["step_outputs", "stream_entries", "workflow_status"]));
      const wf = engine.workflow("in-schema", async (ctx, n: number) => {
        for (let i = 0; i < n; i++) await ctx.writeStream("s", i);
        return n;
      });
      const handle = await wf.start(3, { workflowId: `in ${schema}` });
      // A live reader of the stream: woken by the NOTIFYs on "pgtide.<schema>".
      expect(await within(10_000, "the live reader", collect(engine.readStreamAsync(handle.workflowId, "s")))).toEqual([0, 1, 2]);
      expect(await handle.getResult()).toBe(3);
      const [row] = await sql.unsafe(`select status from "${schema.replace(/"/g, '""')}".workflow_status where workflow_id = $1`, [handle.workflowId]);
      expect(row).toEqual({ status: "SUCCESS" });
    } finally {
      await engine.close();
    }
  });
});

describe("schema names refused before anything is created", () => {
  it.each(REFUSED)("%s", async (_, schema) => {
    const before = await objects();
    const opened = await outcome(() => Engine.open({ databaseUrl: scratch.url, schema }));
    if (opened.ok) await (opened.value as Engine).close();
    expect(await objects(), "objects created in the database").toEqual(before);
    expectRefusal(opened, InvalidArgumentError, "INVALID_ARGUMENT", "schema");
  });
});
