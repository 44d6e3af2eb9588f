// Every fenced code block of README.md and docs/*.md, run as written.
//
// The blocks are read from the Markdown files when the test runs (test/docs/markdown.ts),
// never copied here: a snippet that changes and stops working fails its test. Each block
// is matched to one entry of PRELUDES below by a marker, a line (or part of one) that only
// that block of its file holds. A block that no entry matches fails with "no prelude for
// snippet N of FILE": a new snippet needs its prelude here, with what its test checks.
//
// How a block runs:
// - TypeScript: written to a module under tmp/ (git-ignored) as prelude + the block as
//   written + epilogue, and run in a process of its own with `node --import tsx`. Its
//   imports `from "pgtide"` and `from "pgtide/http"` are mapped to src/index.ts and
//   src/http/index.ts (what package.json's exports build into dist/, checked below), so
//   the snippets run against the source under test, not a possibly stale build. The
//   prelude defines the block's free names (a fake model, `docs`, `engine`, `http`,
//   `canRead`); `Engine.open()` runs as written, with DATABASE_URL set to a database of its
//   own that this file creates and drops, so the default schema and executor are as a
//   user gets them and nothing of another test's is in the way.
// - `node:http`: the snippet's import (or the README's free name `http`) is test/docs/
//   nodeHttp.ts, node:http itself except that `listen(3000)` takes a free port of
//   127.0.0.1 (the test checks 3000 was asked for): 3000 may be busy on this machine.
// - Browser lines (`// browser: …` in the README, the `js` block of docs/http.md) run in
//   this process with an EventSource stand-in (test/docs/eventSource.ts) against the
//   snippet's real server, as a page served from it would.
// - Shell: `pgtide …` lines run in bash for real, `pgtide` being src/cli/main.ts through
//   tsx, against workflows this file creates; `job-42`, `summaries`, `progress` and `N`
//   become ids and keys that need quoting and percent-encoding, and `[--opt]` groups are
//   run both left out and put in. `export DATABASE_URL=…` runs too, with this file's
//   database as the value. npm and docker compose lines are not run (SKIPPED says why for
//   each); each command they name is checked to exist instead.
// - Output samples (the SSE and JSON blocks of docs/http.md) are compared with what the
//   documented server actually serves.
// - At the end, the TypeScript modules as they ran are typechecked (tsc, strict).
// KEEP_DOCS_RUN=1 keeps tmp/docs-run-*/ (the modules, the `pgtide` wrapper) for a look.
import { randomBytes } from "node:crypto";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { chmod, mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { Engine } from "../src/index.js";
import { gate, within } from "./support/async.js";
import { eventSourceOf, type SourceEvent, type StandInEventSource } from "./docs/eventSource.js";
import { fencedBlocks, type Snippet } from "./docs/markdown.js";
import { shellLines, shQuote, variants, type ShellLine } from "./docs/shell.js";
import { SnippetProcess, type Finished } from "./docs/snippetProcess.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const databaseUrl = inject("databaseUrl");

const DOC_FILES = [
  "README.md",
  ...readdirSync(path.join(ROOT, "docs")).filter((f) => f.endsWith(".md")).sort().map((f) => `docs/${f}`),
];
const SNIPPETS: Snippet[] = DOC_FILES.flatMap((file) => fencedBlocks(file, readFileSync(path.join(ROOT, file), "utf8")));

// Ids and keys wherever a snippet takes one: a path segment must be percent-encoded (space,
// `/`, `%`, `#`, `?`, `&`, `+`, non-ASCII) and a shell word quoted (`'`, `"`, `$`).
const ID = "job 42/α%#?&'\"$1 ü";
const KEY = "sum/maries %#?+ é";
const PROGRESS_KEY = "pro gress/%#? ☃";
const PENDING_ID = "job 43/pending %#? ü";

const MODULES = {
  pgtide: path.join(ROOT, "src/index.ts"),
  "pgtide/http": path.join(ROOT, "src/http/index.ts"),
  "node:http": path.join(ROOT, "test/docs/nodeHttp.ts"),
  child: path.join(ROOT, "test/docs/child.ts"),
};

const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as {
  scripts: Record<string, string>;
  exports: Record<string, { default: string }>;
};

// ---------------------------------------------------------------------------------------
// The run's resources: a work directory under tmp/, databases, engines and processes.

const WORK = path.join(ROOT, "tmp", `docs-run-${process.pid}-${randomBytes(3).toString("hex")}`);
const BIN = path.join(WORK, "bin");
const admin = postgres(databaseUrl, { max: 1, onnotice: () => {} });
const databases: string[] = [];
const engines: Engine[] = [];
const processes: SnippetProcess[] = [];
const afterAllTasks: (() => Promise<void> | void)[] = [];
/** The module each TypeScript block ran as, by `file#index`: typechecked at the end. */
const written = new Map<string, string>();

beforeAll(async () => {
  await mkdir(BIN, { recursive: true });
  // `pgtide` on PATH for the shell lines: the CLI's source, as bin/pgtide.js runs its build.
  const wrapper = path.join(BIN, "pgtide");
  await writeFile(wrapper, `#!/bin/sh\nexec ${shQuote(process.execPath)} --import tsx ${shQuote(path.join(ROOT, "src/cli/main.ts"))} "$@"\n`);
  await chmod(wrapper, 0o755);
});

afterAll(async () => {
  for (const task of afterAllTasks) await task();
  for (const p of processes) p.kill();
  await Promise.all(engines.map((e) => e.close()));
  for (const name of databases) await admin.unsafe(`drop database if exists "${name}" with (force)`);
  await admin.end();
  if (!process.env.KEEP_DOCS_RUN) await rm(WORK, { recursive: true, force: true });
});

/** A database of its own on the test's Postgres, dropped after the file; its URL. */
async function freshDatabase(): Promise<string> {
  const name = `pgtide_docs_${randomBytes(4).toString("hex")}`;
  await admin.unsafe(`create database "${name}" template template0`);
  databases.push(name);
  const url = new URL(databaseUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

async function openEngineOn(url: string): Promise<Engine> {
  const engine = await Engine.open({ databaseUrl: url });
  engines.push(engine);
  return engine;
}

/** This process's environment for a child, with DATABASE_URL only where given. */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const { DATABASE_URL: _, PGTIDE_TEST_DATABASE_URL: __, ...rest } = process.env;
  return { ...rest, PATH: `${BIN}:${process.env.PATH ?? ""}`, ...extra };
}

/** Once, on first use; shared by the tests that need it. */
function lazy<T>(make: () => Promise<T>): () => Promise<T> {
  let made: Promise<T> | undefined;
  return () => (made ??= make());
}

// ---------------------------------------------------------------------------------------
// TypeScript snippets: prelude + snippet as written + epilogue, in a process of its own.

/** The snippet's imports of pgtide, pgtide/http and node:http, pointed at the files above. */
function mapImports(code: string): string {
  return code.replace(/(\bfrom\s*|\bimport\s*\(?\s*)(["'])(pgtide|pgtide\/http|node:http)\2/g, (_, lead: string, quote: string, spec: string) =>
    `${lead}${quote}${MODULES[spec as keyof typeof MODULES]}${quote}`);
}

/** `text` with `from` replaced by `to`, failing if the snippet no longer holds `from`. */
function substitute(snippet: Snippet, from: string, to: string): string {
  expect(snippet.code, `snippet ${snippet.index} of ${snippet.file} should hold ${from}`).toContain(from);
  return snippet.code.replaceAll(from, to);
}

async function runModule(
  snippet: Snippet,
  parts: { prelude: string; code?: string; epilogue: string },
  env: Record<string, string>,
): Promise<SnippetProcess> {
  const file = path.join(WORK, `${path.basename(snippet.file, ".md")}-${snippet.index}-${randomBytes(2).toString("hex")}.mts`);
  const text = [
    `// ---- prelude: the free names of snippet ${snippet.index} of ${snippet.file} ----`,
    mapImports(parts.prelude.trim()),
    `// ---- snippet ${snippet.index} of ${snippet.file} (line ${snippet.line}), as written ----`,
    mapImports(parts.code ?? snippet.code),
    "// ---- epilogue ----",
    mapImports(parts.epilogue.trim()),
    "",
  ].join("\n");
  await writeFile(file, text);
  written.set(`${snippet.file}#${snippet.index}`, file);
  const run = new SnippetProcess(`snippet ${snippet.index} of ${snippet.file} (${file})`, ["--import", "tsx", file], { cwd: ROOT, env: childEnv(env) });
  processes.push(run);
  return run;
}

function expectCleanExit(finished: Finished): void {
  expect(finished.stderr, "stderr").toBe("");
  expect(finished.code, `exit code (stdout: ${finished.stdout})`).toBe(0);
}

// ---------------------------------------------------------------------------------------
// Shell snippets.

interface CommandRun {
  line: string;
  args: string[];
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `script` in bash (PATH holds `pgtide`), to its end within 20 s. */
async function bash(script: string, env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn("bash", ["-c", script], { cwd: ROOT, env: childEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const [code] = await within(20_000, `bash -c ${JSON.stringify(script)}`, once(child, "close"));
  return { code: code as number | null, stdout, stderr };
}

/** What the docs' placeholders stand for in a `pgtide` line: after the command word only
 * (`progress` is a command and a key). */
const PLACEHOLDERS: Record<string, string> = { "job-42": ID, summaries: KEY, progress: PROGRESS_KEY, N: "3" };

/** Why npm and docker compose lines are not run, by command; each is checked instead. */
const SKIPPED: Record<string, string> = {
  "npm install": "the setup itself: this checkout is installed (node_modules, dist/ built by `prepare`)",
  "npm ci": "the setup itself",
  "npm test": "the whole suite, of which this file is a part: running it here would run this test again",
  "npm run test:faults": "the fault-injection suite, its own minutes-long run (test/faults)",
  "npm run test:e2e": "the browser end-to-end test, run by npm test (test/web.e2e.test.ts)",
  "npm run demo": "an interactive terminal demo that runs until stopped",
  "npm run demo:web": "a web server that runs until stopped; test/web.e2e.test.ts drives it in Chromium",
  "npm run bench": "a minutes-long benchmark that rewrites BENCHMARKS.md",
  "npm run db:generate": "writes a new migration from src/db/schema.ts changes: a developer's step, it changes the repository",
  "docker compose": "needs a Docker engine, which this machine does not have",
};

/** Checks a line that is not run: it has a reason above, and what it names exists. */
function checkSkipped(line: Extract<ShellLine, { kind: "skip" }>): string {
  const [verb, script] = line.words;
  const command = line.tool === "docker compose" ? "docker compose" : verb === "run" ? `npm run ${script}` : `npm ${verb}`;
  expect(SKIPPED, `no reason to skip ${JSON.stringify(line.text)}: run it, or say in SKIPPED why not`).toHaveProperty([command]);
  if (line.tool === "docker compose") {
    expect(existsSync(path.join(ROOT, "docker-compose.yml")), "docker-compose.yml").toBe(true);
  } else if (verb === "install" || verb === "ci") {
    // A standard npm command; "also builds dist/" is `prepare`.
    expect(pkg.scripts.prepare).toBe("npm run build");
    expect(pkg.scripts.build).toMatch(/^tsc -p tsconfig\.build\.json$/);
  } else {
    const name = verb === "run" ? script! : verb!;
    expect(pkg.scripts, `package.json has no script ${JSON.stringify(name)} for ${JSON.stringify(line.text)}`).toHaveProperty([name]);
    // Each program it starts is installed, and each file it names exists.
    for (const part of pkg.scripts[name]!.split("&&")) {
      const [program, ...args] = part.trim().split(/\s+/);
      expect(program === "npm" || existsSync(path.join(ROOT, "node_modules/.bin", program!)), `${program} of npm script ${name}`).toBe(true);
      for (const arg of args.filter((a) => /\.(ts|js|mjs)$/.test(a))) expect(existsSync(path.join(ROOT, arg)), `${arg} of npm script ${name}`).toBe(true);
    }
  }
  return `${line.text.trim()} -> skipped: ${SKIPPED[command]}`;
}

/** What the workflows behind the shell lines hold (created by the test before they run). */
interface CliWorld {
  url: string;
  streams: Map<string, unknown[]>; // `${workflowId}\0${key}` -> values
  results: Map<string, { name: string; status: string; output?: unknown }>;
}

/** Runs a shell block: exports for real, `pgtide` lines (every variant) checked against
 * `world`, npm/docker lines checked and skipped. Returns one line per line, for the log. */
async function runShellBlock(snippet: Snippet, world: CliWorld | undefined, env: Record<string, string>): Promise<CommandRun[]> {
  const lines = shellLines(snippet.code);
  const exports: string[] = [];
  const runs: Promise<CommandRun>[] = [];
  for (const line of lines) {
    if (line.kind === "export") {
      // The documented URL is an example; ours goes in its place.
      expect(line.value).toMatch(/^postgres(ql)?:\/\//);
      expect(line.name).toBe("DATABASE_URL");
      exports.push(`export ${line.name}=${shQuote(world!.url)}`);
    }
  }
  for (const line of lines) {
    if (line.kind === "skip") checkSkipped(line);
    if (line.kind !== "pgtide") continue;
    for (const words of variants(line.words)) {
      const args = words.map((w, i) => (i === 0 ? w : PLACEHOLDERS[w] ?? w));
      const script = [...exports, ["pgtide", ...args].map(shQuote).join(" ")].join("\n");
      runs.push(bash(script, env).then((r) => ({ line: line.text, args, ...r })));
    }
  }
  const done = await Promise.all(runs);
  for (const run of done) checkPgtide(run, world!);
  return done;
}

/** What the CLI must print for `args`, from what the test wrote. */
function checkPgtide(run: CommandRun, world: CliWorld): void {
  const where = `pgtide ${run.args.join(" ")} (from ${JSON.stringify(run.line)})\nstdout: ${run.stdout}\nstderr: ${run.stderr}`;
  const [command, ...rest] = run.args;
  expect(run.stderr, where).toBe("");
  expect(run.code, where).toBe(0);
  if (rest.includes("--help") || rest.includes("-h")) {
    expect(run.stdout, where).toMatch(new RegExp(`^Usage: pgtide ${command} `));
    expect(run.stdout, where).toContain("--database-url <url>");
    expect(run.stdout, where).toContain("--schema <name>");
    return;
  }
  const positionals = rest.filter((a, i) => !a.startsWith("--") && !["--from", "--status", "--name", "--limit", "--schema", "--database-url"].includes(rest[i - 1] ?? ""));
  const option = (name: string) => (rest.includes(name) ? rest[rest.indexOf(name) + 1] : undefined);
  const stream = (id: string, key: string) => {
    const values = world.streams.get(`${id}\0${key}`);
    expect(values, `${where}\nthe test wrote no stream ${key} of ${id}`).toBeDefined();
    return values!;
  };
  switch (command) {
    case "tail": {
      const [id, key] = positionals;
      const from = Number(option("--from") ?? 0);
      const json = rest.includes("--json");
      const values = stream(id!, key!);
      expect(from, "--from must leave entries to print").toBeLessThan(values.length);
      const expected = values.map((value, offset) => ({ offset, value })).slice(from)
        .map((e) => (json ? JSON.stringify(e) : typeof e.value === "string" ? e.value : JSON.stringify(e.value)));
      expect(run.stdout.split("\n").slice(0, -1), where).toEqual(expected);
      return;
    }
    case "progress": {
      const [id, key] = positionals;
      const last = new Map<string, { done: number; total: number }>();
      for (const p of stream(id!, key!) as { done: number; total: number; label?: string }[]) last.set(p.label ?? "", p);
      expect(last.size).toBeGreaterThan(0);
      for (const [label, { done, total }] of last) {
        const percent = Math.floor((done / total) * 100); // as cli-progress rounds
        expect(run.stdout, where).toMatch(new RegExp(`^${escapeRegExp(label)}\\s*\\[[█░]+\\] ${percent}% \\| ${done}/${total}$`, "m"));
      }
      return;
    }
    case "status": {
      const [id] = positionals;
      const row = world.results.get(id!)!;
      expect(row, where).toBeDefined();
      expect(run.stdout, where).toMatch(new RegExp(`^workflow  ${escapeRegExp(id!)}$`, "m"));
      expect(run.stdout, where).toMatch(new RegExp(`^name      ${escapeRegExp(row.name)}$`, "m"));
      expect(run.stdout, where).toMatch(new RegExp(`^status    ${row.status}$`, "m"));
      expect(run.stdout, where).toMatch(/^created   \d{4}-\d\d-\d\dT/m);
      expect(run.stdout, where).toMatch(/^updated   \d{4}-\d\d-\d\dT/m);
      if (row.status === "SUCCESS") expect(run.stdout, where).toMatch(new RegExp(`^output    ${escapeRegExp(JSON.stringify(row.output))}$`, "m"));
      return;
    }
    case "list": {
      const status = option("--status")?.toUpperCase();
      const rows = [...world.results].filter(([, r]) => status === undefined || r.status === status);
      const lines = run.stdout.split("\n").slice(0, -1);
      expect(lines[0], where).toMatch(/^WORKFLOW ID\s+NAME\s+STATUS\s+UPDATED$/);
      expect(lines.length - 1, where).toBe(rows.length);
      for (const [id, r] of rows) {
        expect(lines.some((l) => new RegExp(`^${escapeRegExp(id)}\\s+${escapeRegExp(r.name)}\\s+${r.status}\\s+\\d{4}-`).test(l)), `${where}\nrow of ${id}`).toBe(true);
      }
      return;
    }
    default:
      throw new Error(`${where}\nno check for the command ${JSON.stringify(command)}: add one to checkPgtide`);
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The workflows the docs' `pgtide` lines read: job-42 (ID) finished with summaries and
 * progress bars, and a PENDING one for `list --status PENDING`. In a database of their own,
 * in the default schema, as the lines (no --schema) expect. */
const cliWorld = lazy(async (): Promise<CliWorld> => {
  const url = await freshDatabase();
  const engine = await openEngineOn(url);
  const summaries: unknown[] = [...Array.from({ length: 11 }, (_, i) => `summary ${i}: ü/%#`), { n: 11, text: "not a string" }];
  const progress = [
    { done: 0, total: 2, label: "download" },
    { done: 1, total: 2, label: "download" },
    { done: 5, total: 8, label: "summarize ü" },
    { done: 2, total: 2, label: "download" },
  ];
  const output = { summaries: summaries.length };
  const summarize = engine.workflow("summarize", async (ctx) => {
    for (const value of summaries) await ctx.writeStream(KEY, value);
    for (const p of progress) await ctx.writeProgress(PROGRESS_KEY, p);
    return output;
  });
  await within(20_000, "the workflow behind the shell lines", (await summarize.start(undefined, { workflowId: ID })).getResult());
  const hold = gate();
  afterAllTasks.push(() => hold.open());
  const waits = engine.workflow("waits", async () => {
    await hold.promise;
  });
  await waits.start(undefined, { workflowId: PENDING_ID });
  return {
    url,
    streams: new Map([[`${ID}\0${KEY}`, summaries], [`${ID}\0${PROGRESS_KEY}`, progress]]),
    results: new Map([
      [ID, { name: "summarize", status: "SUCCESS", output }],
      [PENDING_ID, { name: "waits", status: "PENDING" }],
    ]),
  };
});

// ---------------------------------------------------------------------------------------
// The server of docs/http.md, run once and shared by its four blocks.

interface Served {
  origin: string;
  requestedPort: unknown;
  /** The values of the SSE sample (block 3), written to "tokens" and to KEY of workflow ID. */
  values: unknown[];
  run: SnippetProcess;
}

/** The SSE sample's events: the `data:` values and ids, and the close. */
function parseSse(text: string): { id?: string; event?: string; data: string }[] {
  return text.split("\n\n").filter((chunk) => chunk !== "" && !chunk.startsWith(":")).map((chunk) => {
    const event: { id?: string; event?: string; data: string } = { data: "" };
    for (const line of chunk.split("\n")) {
      const [, field, value] = /^([a-z]+):(?: ?)(.*)$/.exec(line) ?? [];
      if (field === "data") event.data = value!;
      else if (field === "id" || field === "event") event[field] = value!;
      else throw new Error(`an SSE line this test does not know: ${JSON.stringify(line)}`);
    }
    return event;
  });
}

/** Events with each data line's JSON parsed (jsonb keeps no key order, so the text may differ). */
function decoded(events: { id?: string; event?: string; data: string }[]): { id?: string; event?: string; data: unknown }[] {
  return events.map((e) => ({ ...e, data: e.data === "" ? "" : (JSON.parse(e.data) as unknown) }));
}

function snippetOf(file: string, marker: string): Snippet {
  const found = SNIPPETS.filter((s) => s.file === file && s.code.includes(marker));
  expect(found, `one block of ${file} holding ${JSON.stringify(marker)}`).toHaveLength(1);
  return found[0]!;
}

const SSE_SAMPLE_MARKER = "event: close";

const httpDocServer = lazy(async (): Promise<Served> => {
  const server = snippetOf("docs/http.md", HTTP_SERVER_MARKER);
  const sample = parseSse(snippetOf("docs/http.md", SSE_SAMPLE_MARKER).code);
  const values = sample.filter((e) => e.event === undefined).map((e) => JSON.parse(e.data) as unknown);
  expect(values.length).toBeGreaterThan(0);
  const url = await freshDatabase();
  const run = await runModule(server, {
    prelude: `
import { announce, stdinEnded } from "${MODULES.child}";
import { closeServers } from "${MODULES["node:http"]}";
// canRead, the app's own check: anyone but a request that says it is a stranger.
function canRead(request: Request, workflowId: string): boolean {
  return request.headers.get("x-reader") !== "stranger" && workflowId !== "";
}`,
    epilogue: `
const values: unknown[] = ${JSON.stringify(values)};
const answer = engine.workflow("answer", async (ctx) => {
  for (const value of values) await ctx.writeStream("tokens", value);
  for (const value of values) await ctx.writeStream(${JSON.stringify(KEY)}, value);
});
await (await answer.start(undefined, { workflowId: ${JSON.stringify(ID)} })).getResult();
announce({ ready: true });
await stdinEnded();
await closeServers();
await engine.close();`,
  }, { DATABASE_URL: url });
  const listening = await run.message("its server listening", (m) => "listening" in m);
  await run.message("ready", (m) => m.ready === true);
  afterAllTasks.push(async () => {
    expectCleanExit(await run.finish());
  });
  return { origin: `http://127.0.0.1:${listening.listening}`, requestedPort: listening.requestedPort, values, run };
});

const HTTP_SERVER_MARKER = "http.createServer(toNodeHandler(async (request) => {";
const enc = encodeURIComponent;

async function readSse(response: Response): Promise<{ id?: string; event?: string; data: string }[]> {
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
  return parseSse(await within(10_000, "the event stream to end at its close", response.text()));
}

/** Runs browser code (a `js` block, a `// browser:` line) with the page's globals. */
function runInPage(code: string, origin: string, globals: Record<string, unknown>): StandInEventSource[] {
  const made: StandInEventSource[] = [];
  const names = ["EventSource", ...Object.keys(globals)];
  new Function(...names, code)(eventSourceOf(origin, made), ...Object.values(globals));
  return made;
}

function messagesOf(source: StandInEventSource): SourceEvent[] {
  return source.events.filter((e) => e.type === "message");
}

// ---------------------------------------------------------------------------------------
// One entry per block: its marker, what its test checks, and the test.

interface Prelude {
  file: string;
  /** A line (or part of one) that only this block of the file holds. */
  marker: string;
  checks: string;
  run: (snippet: Snippet) => Promise<void>;
}

const PRELUDES: Prelude[] = [
  {
    file: "README.md",
    marker: "npm install      # also builds dist/",
    checks: "set-up lines: each npm script exists (not run: see SKIPPED)",
    run: async (snippet) => {
      const lines = shellLines(snippet.code).filter((l) => l.kind === "skip");
      expect(lines.length).toBeGreaterThan(0);
      for (const line of lines) checkSkipped(line);
    },
  },
  {
    file: "README.md",
    marker: 'const summarize = engine.workflow("summarize"',
    checks: "prints each summary, then done; the streams hold each value once and are closed",
    run: async (snippet) => {
      const docs = ["Доклад № 1: α/β", "second doc, 50% done", "third #doc? ü"];
      const url = await freshDatabase();
      const run = await runModule(snippet, {
        prelude: `
// The documents and the model: a fake model that summarises a document as one line.
const docs: string[] = ${JSON.stringify(docs)};
async function callModel(doc: string): Promise<string> {
  return "summary of " + doc;
}`,
        code: substitute(snippet, '"job-42"', JSON.stringify(ID)),
        epilogue: "",
      }, { DATABASE_URL: url });
      // It ends by itself (engine.close() leaves nothing running).
      const finished = await within(30_000, "the README example to end", run.exited);
      expectCleanExit(finished);
      expect(finished.stdout).toBe(`${docs.map((d) => `summary of ${d}\n`).join("")}done\n`);
      const engine = await openEngineOn(url);
      expect(await engine.retrieveWorkflow(ID).getStatus()).toBe("SUCCESS");
      expect(await engine.readStream(ID, "summaries", { wait: false })).toEqual({ values: docs.map((d) => `summary of ${d}`), closed: true });
      expect(await engine.readStream(ID, "progress", { wait: false })).toEqual({
        values: docs.map((_, i) => ({ done: i + 1, total: docs.length })),
        closed: true,
      });
    },
  },
  {
    file: "README.md",
    marker: 'import { streamResponse, toNodeHandler } from "pgtide/http";',
    checks: "its server serves any id and key percent-encoded; its browser line shows every token",
    run: async (snippet) => {
      const browser = /^\/\/ browser: (.+)$/m.exec(snippet.code)?.[1];
      expect(browser, "the README's HTTP block ends with a `// browser: …` line").toBeDefined();
      const tokens: unknown[] = ["Hello", " wörld", { text: "#?%/", n: 1 }, "!"];
      const url = await freshDatabase();
      const run = await runModule(snippet, {
        prelude: `
import http, { closeServers } from "node:http";
import { Engine } from "pgtide";
import { announce, stdinEnded } from "${MODULES.child}";
// engine, and an answer in its "tokens" stream (the browser line's key) and in a key that
// needs percent-encoding, both of workflow ${JSON.stringify(ID)}.
const engine = await Engine.open();
const tokens: unknown[] = ${JSON.stringify(tokens)};
const answer = engine.workflow("answer", async (ctx) => {
  for (const token of tokens) await ctx.writeStream("tokens", token);
  for (const token of tokens) await ctx.writeStream(${JSON.stringify(KEY)}, token);
});
await (await answer.start(undefined, { workflowId: ${JSON.stringify(ID)} })).getResult();`,
        epilogue: `
announce({ ready: true });
await stdinEnded();
await closeServers();
await engine.close();`,
      }, { DATABASE_URL: url });
      const listening = await run.message("its server listening", (m) => "listening" in m);
      expect(listening.requestedPort, "the port the snippet listens on").toBe(3000);
      await run.message("ready", (m) => m.ready === true);
      const origin = `http://127.0.0.1:${listening.listening}`;

      // A real HTTP client, the id and the key each percent-encoded.
      const range = await fetch(`${origin}/streams/${enc(ID)}/${enc(KEY)}?format=json`);
      expect(range.status, await range.clone().text()).toBe(200);
      expect(await range.json()).toEqual({ entries: tokens.map((value, offset) => ({ offset, value })), next: tokens.length, closed: true });
      const events = await readSse(await fetch(`${origin}/streams/${enc(ID)}/${enc(KEY)}`));
      expect(decoded(events)).toEqual([...tokens.map((t, i) => ({ id: String(i), data: t })), { event: "close", data: "" }]);

      // The browser line, in a page served from that server.
      const shown: unknown[] = [];
      const [source, ...more] = runInPage(browser!, origin, { show: (value: unknown) => shown.push(value), id: ID });
      expect(more).toHaveLength(0);
      const outcome = await within(10_000, "the page's EventSource to reach the end", source!.finished);
      expect(source!.status).toBe(200);
      expect(source!.listenerErrors).toEqual([]);
      expect(shown).toEqual(tokens);
      expect(messagesOf(source!).map((e) => e.lastEventId)).toEqual(tokens.map((_, i) => String(i)));
      expect(source!.events.some((e) => e.type === "close")).toBe(true);
      // The line sets no close listener, so the source is left open at the end (a browser
      // would reconnect and be told again that the stream is closed): docs/http.md's block
      // shows the listener that closes it.
      expect(["ended", "closed"]).toContain(outcome);
      source!.close();

      expectCleanExit(await run.finish());
    },
  },
  {
    file: "README.md",
    marker: "pgtide tail job-42 summaries [--from N] [--json]",
    checks: "each pgtide line (every [option] variant) prints what the workflow wrote; --help of each command lists --database-url and --schema",
    run: async (snippet) => {
      const world = await cliWorld();
      const runs = await runShellBlock(snippet, world, { DATABASE_URL: world.url });
      // tail: 4 variants; progress, status, list: one each.
      expect(runs.map((r) => r.args[0])).toEqual(["tail", "tail", "tail", "tail", "progress", "status", "list"]);
      // The block's last line: "--database-url URL (or DATABASE_URL), --schema S, --help on every command".
      const comment = shellLines(snippet.code).find((l) => l.kind === "comment" && l.comment.includes("--help on every command"));
      expect(comment, "the block's comment on the options every command takes").toBeDefined();
      const help = await Promise.all(["tail", "progress", "status", "list"].map(async (command) => {
        const r = await bash(`pgtide ${command} --help`, {});
        return { line: comment!.text, args: [command, "--help"], ...r };
      }));
      for (const r of help) checkPgtide(r, world);
    },
  },
  {
    file: "README.md",
    marker: "npm run db:generate",
    checks: "development lines: each npm script exists (not run: see SKIPPED)",
    run: async (snippet) => {
      const lines = shellLines(snippet.code).filter((l) => l.kind === "skip");
      expect(lines.map((l) => l.kind === "skip" && l.command)).toEqual(["npm test", "npm run test:faults", "npm run bench", "npm run db:generate"]);
      for (const line of lines) checkSkipped(line);
    },
  },
  {
    file: "docs/cli.md",
    marker: "export DATABASE_URL=",
    checks: "the export runs, then each pgtide line prints what the workflow wrote",
    run: async (snippet) => {
      const world = await cliWorld();
      // No DATABASE_URL but the block's own export.
      const runs = await runShellBlock(snippet, world, {});
      expect(runs.map((r) => r.args.filter((a) => a.startsWith("-") || a === r.args[0]).join(" "))).toEqual([
        "list --status", "status", "tail", "tail --from --json", "progress", "tail --help",
      ]);
    },
  },
  {
    file: "docs/cli.md",
    marker: 'await ctx.writeProgress("progress"',
    checks: "in a workflow, it stores the progress entry; pgtide progress draws it",
    run: async (snippet) => {
      const call = /ctx\.writeProgress\(("[^"]*"), (\{[^}]*\})\)/.exec(snippet.code);
      expect(call, "a ctx.writeProgress(key, { … }) call").not.toBeNull();
      const key = JSON.parse(call![1]!) as string;
      const entry = new Function(`return (${call![2]});`)() as { done: number; total: number; label?: string };
      const url = await freshDatabase();
      const run = await runModule(snippet, {
        prelude: `
import { Engine } from "pgtide";
// ctx: the block is the body of a workflow.
const engine = await Engine.open();
const download = engine.workflow("download", async (ctx) => {`,
        epilogue: `
});
await (await download.start(undefined, { workflowId: ${JSON.stringify(ID)} })).getResult();
await engine.close();`,
      }, { DATABASE_URL: url });
      expectCleanExit(await within(30_000, "the workflow to end", run.exited));
      const engine = await openEngineOn(url);
      expect(await engine.readStream(ID, key, { wait: false })).toEqual({ values: [entry], closed: true });
      // "the shape the CLI's progress command reads"
      const world: CliWorld = { url, streams: new Map([[`${ID}\0${key}`, [entry]]]), results: new Map() };
      const drawn = await bash(`pgtide progress ${shQuote(ID)} ${shQuote(key)}`, { DATABASE_URL: url });
      checkPgtide({ line: "(pgtide progress on the block's workflow)", args: ["progress", ID, key], ...drawn }, world);
    },
  },
  {
    file: "docs/http.md",
    marker: HTTP_SERVER_MARKER,
    checks: "listens on 3000; serves SSE and JSON for an id and key percent-encoded; 400 bad encoding, 403, 404",
    run: async () => {
      const { origin, requestedPort, values } = await httpDocServer();
      expect(requestedPort, "the port the snippet listens on").toBe(3000);
      const range = await fetch(`${origin}/streams/${enc(ID)}/${enc(KEY)}?format=json`);
      expect(range.status, await range.clone().text()).toBe(200);
      expect(await range.json()).toEqual({ entries: values.map((value, offset) => ({ offset, value })), next: values.length, closed: true });
      const events = await readSse(await fetch(`${origin}/streams/${enc(ID)}/${enc(KEY)}`));
      expect(events.map((e) => e.id)).toEqual([...values.map((_, i) => String(i)), undefined]);
      expect(events.slice(0, -1).map((e) => JSON.parse(e.data) as unknown)).toEqual(values);
      expect(events.at(-1)).toEqual({ event: "close", data: "" });
      // The snippet's own answers: malformed percent-encoding, another path, canRead's refusal,
      // an unknown workflow.
      const malformed = await fetch(`${origin}/streams/%E0%A4%A/tokens`);
      expect([malformed.status, await malformed.text()]).toEqual([400, "malformed percent-encoding in the path\n"]);
      const other = await fetch(`${origin}/streams/${enc(ID)}`);
      expect([other.status, await other.text()]).toEqual([404, "not found\n"]);
      const refused = await fetch(`${origin}/streams/${enc(ID)}/tokens`, { headers: { "x-reader": "stranger" } });
      expect(refused.status).toBe(403);
      await refused.body?.cancel();
      const unknown = await fetch(`${origin}/streams/${enc("no such job/ü")}/tokens`);
      expect(unknown.status).toBe(404);
      await unknown.body?.cancel();
    },
  },
  {
    file: "docs/http.md",
    marker: "// In the browser",
    checks: "in a page of the server above: shows each value, lastEventId is the offset, the close listener closes the source",
    run: async (snippet) => {
      const { origin, values } = await httpDocServer();
      const shown: unknown[] = [];
      const [source, ...more] = runInPage(snippet.code, origin, { show: (value: unknown) => shown.push(value), workflowId: ID });
      expect(more).toHaveLength(0);
      expect(await within(10_000, "the page's EventSource to be closed", source!.finished)).toBe("closed");
      expect(source!.status).toBe(200);
      expect(source!.listenerErrors).toEqual([]);
      expect(shown).toEqual(values);
      expect(messagesOf(source!).map((e) => e.lastEventId)).toEqual(values.map((_, i) => String(i)));
      // Closed by the block's own listener, on the close event.
      expect(source!.closedDuring).toBe("close");
      expect(source!.readyState).toBe(source!.CLOSED);
    },
  },
  {
    file: "docs/http.md",
    marker: SSE_SAMPLE_MARKER,
    checks: "is what the server sends for those values (each line; data as JSON, jsonb keeps no key order)",
    run: async (snippet) => {
      const { origin } = await httpDocServer();
      const response = await fetch(`${origin}/streams/${enc(ID)}/tokens`);
      const served = await readSse(response);
      const sample = parseSse(snippet.code);
      expect(decoded(served)).toEqual(decoded(sample));
      // The sample's framing, byte for byte: its lines, with each data line's JSON as served.
      expect(snippet.code.endsWith("event: close\ndata:\n\n")).toBe(true);
    },
  },
  {
    file: "docs/http.md",
    marker: '{ "entries": [',
    checks: "is what ?format=json&from=&to= answers for that range of the sample's stream",
    run: async (snippet) => {
      const { origin } = await httpDocServer();
      const sample = JSON.parse(snippet.code) as { entries: { offset: number }[]; next: number };
      const from = sample.entries[0]?.offset ?? 0;
      const response = await fetch(`${origin}/streams/${enc(ID)}/tokens?format=json&from=${from}&to=${sample.next}`);
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual(sample);
    },
  },
  {
    file: "docs/web-demo.md",
    marker: "npm run demo:web",
    checks: "each npm script exists and its file too (not run: see SKIPPED)",
    run: async (snippet) => {
      const lines = shellLines(snippet.code).filter((l) => l.kind === "skip");
      expect(lines).toHaveLength(2);
      for (const line of lines) checkSkipped(line);
    },
  },
];

// ---------------------------------------------------------------------------------------

describe("the docs' code blocks", () => {
  it("are found: README.md and every docs/*.md", () => {
    expect(DOC_FILES).toEqual(expect.arrayContaining(["README.md", "docs/http.md", "docs/cli.md", "docs/web-demo.md"]));
    // Every file with a fence yields its blocks (a doc of prose alone has none to run).
    for (const file of DOC_FILES) {
      const fenced = readFileSync(path.join(ROOT, file), "utf8").includes("```");
      expect(SNIPPETS.some((s) => s.file === file), `a block in ${file}`).toBe(fenced);
    }
  });

  it("pgtide and pgtide/http, which snippets import, are src/index.ts and src/http/index.ts built to dist/", () => {
    expect(pkg.exports["."]!.default).toBe("./dist/index.js");
    expect(pkg.exports["./http"]!.default).toBe("./dist/http/index.js");
    for (const spec of ["pgtide", "pgtide/http"] as const) expect(existsSync(MODULES[spec])).toBe(true);
  });

  it("each prelude belongs to exactly one block", () => {
    for (const prelude of PRELUDES) {
      const matched = SNIPPETS.filter((s) => s.file === prelude.file && s.code.includes(prelude.marker));
      expect(matched.map((s) => `${s.file}#${s.index}`), `the blocks of ${prelude.file} holding ${JSON.stringify(prelude.marker)}`).toHaveLength(1);
    }
  });

  for (const snippet of SNIPPETS) {
    const matches = PRELUDES.filter((p) => p.file === snippet.file && snippet.code.includes(p.marker));
    const name = `snippet ${snippet.index} of ${snippet.file} (${snippet.lang || "no language"}, line ${snippet.line})`;
    if (matches.length !== 1) {
      it(name, () => {
        throw new Error(matches.length === 0
          ? `no prelude for snippet ${snippet.index} of ${snippet.file} (line ${snippet.line}, starting ${JSON.stringify(snippet.code.split("\n")[0])}): add one to PRELUDES in test/docs.run.test.ts`
          : `snippet ${snippet.index} of ${snippet.file} matches ${matches.length} preludes: make their markers unique`);
      });
      continue;
    }
    it(`${name}: ${matches[0]!.checks}`, () => matches[0]!.run(snippet), 40_000);
  }

  // What a TypeScript user copying a block gets: no type error under `strict` (the
  // modules above, prelude + block + epilogue, as they ran). Not under this repository's
  // extra noUncheckedIndexedAccess: the routers' `match[1]` / destructured `split("/")`
  // are `string | undefined` there, and streamResponse's types take only strings.
  it("the TypeScript blocks, with their preludes, typecheck (tsc, strict)", async () => {
    const ts = SNIPPETS.filter((s) => s.lang === "ts" || s.lang === "typescript").map((s) => `${s.file}#${s.index}`);
    expect([...written.keys()].sort(), "every TypeScript block ran above (run the whole file)").toEqual(ts.sort());
    const config = path.join(WORK, "tsconfig.json");
    await writeFile(config, JSON.stringify({
      compilerOptions: {
        target: "ES2022", lib: ["ES2024"], module: "NodeNext", moduleResolution: "NodeNext", strict: true,
        skipLibCheck: true, noEmit: true, allowImportingTsExtensions: true, types: ["node"],
      },
      files: [...written.values()],
    }));
    const tsc = spawn(path.join(ROOT, "node_modules/.bin/tsc"), ["-p", config], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    tsc.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    tsc.stderr.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    const [code] = await within(30_000, "tsc", once(tsc, "close"));
    expect(output).toBe("");
    expect(code).toBe(0);
  }, 40_000);
});
