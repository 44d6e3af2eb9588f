// Scenario 9: hostile strings. Workflow ids, stream keys, step names, inputs, outputs and
// values full of quotes, backslashes, `;--`, `$$`, format and placeholder syntax, JSON
// that looks like a NOTIFY payload, Unicode in several normal forms and emoji. They are
// data, never SQL: each round-trips byte for byte (through the API and as stored), a
// live reader is woken by the notification for each entry (so the payload routing is
// tested too), and a canary table and the schema's list of objects are untouched.
import { expect, it } from "vitest";
import { admin, openEngine } from "../support/engines.js";
import { faultReport } from "./support/report.js";
import { exact, follow, SequenceChecker, tally } from "./support/sequence.js";
import { deadline } from "./support/wait.js";

const HOSTILE = [
  "'", "''", '"', "\\", "\\'", "'\\''",
  "'; drop table canary; --", '"; drop table canary; --', "'); delete from workflow_status; --",
  "$$", "$$; drop table canary; $$", "$tag$ x $tag$", "$1", "${1}", "?", ":name", "%s %d %n %%",
  "--", "/* */", "\\x00", "\\u0000", "E'\\x41'",
  '{"w":"x","k":"y","o":999}', '","o":1e9,"w":"', "pgtide.public", "listen x; notify x, 'y'",
  "null", "undefined", "true", "0", "-1", " ", " leading and trailing ",
  "é (composed)", "e\u0301 (decomposed)", "ǅ Å Å (ohm, angstrom)", "שלום עולם", "漢字かな交じり", "Ελληνικά",
  "🦀🔥", "👨‍👩‍👧‍👦 (zero-width joiners)", "🇫🇷🏳️‍🌈", "\u200b(zero width space)", "\ufeffBOM", "\u2028\u2029 separators",
  "\u{10FFFF} last code point", "𝕳𝖔𝖘𝖙𝖎𝖑𝖊", "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǫ̗͎͊",
  "🦀".repeat(100), // 200 UTF-16 units: the longest id allowed
];

const report = faultReport(
  9,
  "Hostile strings in ids, keys and values",
  `${HOSTILE.length} hostile strings (quotes, backslashes, \`;--\`, \`$$\` and dollar tags, placeholders, format ` +
    "specifiers, NOTIFY-payload-like JSON, composed and decomposed Unicode, RTL text, emoji with joiners, U+2028, a BOM, " +
    "U+10FFFF, a 200-unit emoji id) are each used as a workflow id, a stream key, a step name, the input, the output " +
    "and in values. Each workflow writes three values and waits until its live reader has each one, so only the " +
    "notification for that exact id and key can wake the reader. Checked: every reader's sequence; ids, keys, step " +
    "names and values read back equal and byte-identical in the table (convert_to(..., 'UTF8')); a canary table and " +
    "the schema's tables, functions and triggers are unchanged.",
);

const values = (h: string) => [h, { [h]: h, nested: [h, { k: h }] }, `${h}|${h}`];

it(`${HOSTILE.length} hostile strings round-trip byte for byte and change nothing else`, { timeout: 120_000 }, async () => {
  expect(new Set(HOSTILE).size).toBe(HOSTILE.length);
  const engine = await openEngine();
  const schema = engine.schema;
  await admin.unsafe(`create table "${schema}".canary (id int primary key, note text not null)`);
  await admin.unsafe(`insert into "${schema}".canary values (1, 'one'), (2, 'two'), (3, 'three')`);
  const objects = () =>
    admin.unsafe(
      `select 'table' as kind, c.relname::text as name from pg_class c where c.relnamespace = $1::regnamespace
       union all select 'function', p.proname::text from pg_proc p where p.pronamespace = $1::regnamespace
       union all select 'trigger', t.tgname::text from pg_trigger t join pg_class c on c.oid = t.tgrelid
                 where c.relnamespace = $1::regnamespace and not t.tgisinternal
       order by 1, 2`,
      [schema],
    );
  const objectsBefore = await objects();

  const checkers = new Map(HOSTILE.map((h) => [h, new SequenceChecker(`reader of ${JSON.stringify(h).slice(0, 40)}`, 0, (i) => values(h)[i], 3)]));
  const wf = engine.workflow("hostile", async (ctx, h: string) => {
    const stepped = await ctx.step(h, () => h);
    const list = values(stepped);
    for (let i = 0; i < list.length; i++) {
      await ctx.writeStream(h, list[i]);
      // Nothing else happens until the reader has it: only this entry's NOTIFY can wake it.
      await checkers.get(h)!.reached(i + 1, 10_000);
    }
    return h;
  });

  const following: Promise<void>[] = [];
  const handles = [];
  for (const h of HOSTILE) {
    const handle = await wf.start(h, { workflowId: h });
    following.push(follow(checkers.get(h)!, engine.readStreamEntries(h, h)));
    handles.push(handle);
  }
  const results = await deadline(60_000, "every workflow", Promise.all(handles.map((handle) => handle.getResult())));
  await deadline(30_000, "every reader", Promise.all(following));
  const counts = tally([...checkers.values()].map((c) => c.counts()));
  report.counts(counts);
  report.wrote(HOSTILE.length * 3);
  expect(counts.problems).toEqual([]);
  expect(exact(counts)).toBe(true);
  expect(results).toEqual(HOSTILE);

  // Through the API.
  const listed = (await engine.listWorkflows({ limit: 1000 })).map((row) => row.workflowId).sort();
  expect(listed).toEqual([...HOSTILE].sort());
  for (const h of HOSTILE) {
    const row = await engine.getWorkflow(h);
    expect(row.workflowId).toBe(h);
    expect(row.output).toBe(h);
    expect(await engine.readStream(h, h)).toEqual({ values: values(h), closed: true });
  }

  // As stored: the exact UTF-8 bytes.
  const bytes = (s: string) => Buffer.from(s, "utf8").toString("hex");
  const stored = (await admin.unsafe(
    `select encode(convert_to(s.workflow_id, 'UTF8'), 'hex') as id, encode(convert_to(s.input #>> '{}', 'UTF8'), 'hex') as input,
            encode(convert_to(o.name, 'UTF8'), 'hex') as step, encode(convert_to(o.output #>> '{}', 'UTF8'), 'hex') as step_output,
            (select array_agg(encode(convert_to(e.key, 'UTF8'), 'hex') || ':' || e."offset" || ':' ||
                              coalesce(encode(convert_to(e.value::text, 'UTF8'), 'hex'), 'close') order by e."offset")
             from "${schema}".stream_entries e where e.workflow_id = s.workflow_id) as entries
     from "${schema}".workflow_status s join "${schema}".step_outputs o on o.workflow_id = s.workflow_id`,
  )) as unknown as { id: string; input: string; step: string; step_output: string; entries: string[] }[];
  expect(stored).toHaveLength(HOSTILE.length);
  const byId = new Map(stored.map((r) => [r.id, r]));
  const mismatches: string[] = [];
  for (const h of HOSTILE) {
    const r = byId.get(bytes(h));
    if (!r) {
      mismatches.push(`no workflow row with the bytes of ${JSON.stringify(h)}`);
      continue;
    }
    if (r.input !== bytes(h) || r.step !== bytes(h) || r.step_output !== bytes(h)) mismatches.push(`input/step bytes differ for ${JSON.stringify(h)}`);
    const decoded = r.entries.map((e) => e.split(":"));
    if (decoded.some(([key]) => key !== bytes(h))) mismatches.push(`key bytes differ for ${JSON.stringify(h)}`);
    const first = decoded[0]?.[2];
    if (first === undefined || Buffer.from(first, "hex").toString("utf8") !== JSON.stringify(h)) mismatches.push(`value bytes differ for ${JSON.stringify(h)}`);
    if (decoded.length !== 4 || decoded[3]?.[2] !== "close") mismatches.push(`stream of ${JSON.stringify(h)} is not 3 values and a close`);
  }
  expect(mismatches).toEqual([]);

  // Nothing else changed.
  expect(await admin.unsafe(`select id, note from "${schema}".canary order by id`)).toEqual([
    { id: 1, note: "one" }, { id: 2, note: "two" }, { id: 3, note: "three" },
  ]);
  expect(await objects()).toEqual(objectsBefore);
  report.note(`${HOSTILE.length} workflows; ${listed.length} ids listed back; every id, key, step name, input, output and value byte-identical in the table; canary rows and the schema's ${objectsBefore.length} objects unchanged`);
});
