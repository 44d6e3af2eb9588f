// `npm run bench [-- --quick] [--only latency,fanout] [--src] [--render]`: runs each scenario in a child
// process of its own (its own heap, its own connections, killed if it overruns), in a
// fresh schema that is dropped afterwards whatever happened, then writes BENCHMARKS.md
// and bench/results.json. Exits non-zero if a scenario failed (numbers are not asserted).
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, readFile, rm, rmdir, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import { startEmbeddedPostgres, type EmbeddedPostgres } from "../src/db/embedded.js";
import { fanout } from "./fanout.js";
import { latency } from "./latency.js";
import { longStreams } from "./long-streams.js";
import { manyStreams } from "./many-streams.js";
import { peers } from "./peers.js";
import { throughput } from "./throughput.js";
import { describeRow, suffix, type Scenario, type ScenarioResult } from "./support.js";
import { renderMarkdown, type Machine, type Report } from "./report.js";

const SCENARIOS: Scenario[] = [latency, throughput, fanout, manyStreams, longStreams, peers];
// The machine's Postgres service (BENCH_SERVICE_URL overrides it, to try the fallbacks).
const SERVICE_URL = process.env.BENCH_SERVICE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "..");

interface Args {
  quick: boolean;
  /** Run src/ through tsx instead of tsc's output (see pgtide.ts). */
  src: boolean;
  only: string[] | undefined;
  child?: { id: string; schema: string; url: string; out: string };
}

function parseArgs(argv: string[]): Args {
  const value = (name: string): string | undefined => {
    const i = argv.findIndex((a) => a === name || a.startsWith(`${name}=`));
    if (i < 0) return undefined;
    const a = argv[i]!;
    return a.includes("=") ? a.slice(a.indexOf("=") + 1) : argv[i + 1];
  };
  const only = value("--only")?.split(",").map((s) => s.trim()).filter(Boolean);
  const child = value("--child");
  return {
    quick: argv.includes("--quick"),
    src: argv.includes("--src"),
    only,
    ...(child ? { child: { id: child, schema: value("--schema")!, url: value("--url")!, out: value("--out")! } } : {}),
  };
}

// ------------------------------------------------------------------------------- child side

async function runChild(args: Args): Promise<never> {
  const { id, schema, url, out } = args.child!;
  const scenario = SCENARIOS.find((s) => s.id === id)!;
  const budgetMs = (args.quick ? scenario.timeout.quick : scenario.timeout.full) * 1000;
  const log = (line: string) => console.log(`  [${id}] ${line}`);
  // Ends this process even if the parent is gone and something hangs.
  setTimeout(() => {
    console.error(`  [${id}] watchdog: over budget, exiting`);
    process.exit(3);
  }, budgetMs + 1000).unref();
  try {
    const result = await scenario.run({ url, schema, quick: args.quick, budgetMs, log });
    await writeFile(out, JSON.stringify(result));
    process.exit(0);
  } catch (error) {
    console.error(`  [${id}] failed:`, error);
    await writeFile(out, JSON.stringify({ error: String((error as Error)?.stack ?? error) })).catch(() => {});
    process.exit(1);
  }
}

// ------------------------------------------------------------------------------ parent side

async function answers(url: string): Promise<string | undefined> {
  const sql = postgres(url, { max: 1, connect_timeout: 3, onnotice: () => {} });
  try {
    const [row] = await sql`select current_setting('server_version') as v`;
    return row?.v as string;
  } catch {
    return undefined;
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}

async function database(): Promise<{ url: string; where: string; stop: () => Promise<void> }> {
  const candidates = [process.env.DATABASE_URL, SERVICE_URL].filter((u): u is string => !!u);
  for (const url of candidates) {
    if (await answers(url)) return { url, where: url.replace(/\/\/[^@/]*@/, "//"), stop: async () => {} };
    console.log(`bench: ${url.replace(/\/\/[^@/]*@/, "//")} does not answer`);
  }
  console.log("bench: starting the embedded Postgres");
  const dir = await mkdtemp(path.join(os.tmpdir(), "pgtide-bench-"));
  await chmod(dir, 0o755); // the postgres user must reach the data dir
  const embedded: EmbeddedPostgres = await startEmbeddedPostgres({ dataDir: path.join(dir, "pgdata") });
  return {
    url: embedded.url,
    where: "embedded Postgres: neither DATABASE_URL nor the service answered",
    stop: async () => {
      await embedded.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function machine(url: string, where: string): Promise<Machine> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  let pg = "unknown";
  let settings = "";
  try {
    const [v] = await sql`select current_setting('server_version') as v`;
    pg = v!.v as string;
    const rows = await sql`
      select name, current_setting(name) as setting from pg_settings
      where name in ('synchronous_commit', 'fsync', 'shared_buffers', 'max_connections')
      order by name`;
    settings = rows.map((r) => `${r.name}=${r.setting}`).join(", ");
  } finally {
    await sql.end({ timeout: 1 });
  }
  let redis = "absent";
  try {
    const { Redis } = await import("ioredis");
    const client = new Redis({ host: "127.0.0.1", port: 6379, lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null });
    try {
      await client.connect();
      const info = await client.info("server");
      redis = /redis_version:(\S+)/.exec(info)?.[1] ?? "present";
    } finally {
      client.disconnect();
    }
  } catch {
    // stays "absent"
  }
  return {
    nproc: os.availableParallelism(),
    cpu: os.cpus()[0]?.model.trim() ?? "unknown",
    memGB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    postgres: pg,
    postgresWhere: where,
    postgresSettings: settings,
    redis,
    pgtide: "",
    loadBefore: os.loadavg().map((l) => l.toFixed(2)).join(" "),
    loadAfter: "",
  };
}

/**
 * Compiles src/ as `npm run build` does, into node_modules/.cache (inside the project,
 * so the compiled files resolve their dependencies), with drizzle/ beside it where the
 * migrator looks. Undefined (and the bench runs src/ through tsx) if that fails.
 */
async function build(): Promise<{ dist: string; remove: () => Promise<void> } | undefined> {
  const dir = path.join(ROOT, "node_modules", ".cache", "pgtide-bench", String(process.pid));
  const dist = path.join(dir, "dist");
  const remove = async () => {
    await rm(dir, { recursive: true, force: true });
    await rmdir(path.dirname(dir)).catch(() => {}); // if no other run is using it
  };
  await remove();
  const tsc = path.join(ROOT, "node_modules", ".bin", "tsc");
  const args = ["-p", "tsconfig.build.json", "--outDir", dist, "--declaration", "false", "--sourceMap", "false"];
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn(tsc, args, { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
    child.on("error", () => resolve(-1));
    child.on("exit", resolve);
  });
  // tsc emits despite type errors (another edit in progress): the output is still usable.
  if (!existsSync(path.join(dist, "index.js"))) {
    console.log(`bench: tsc did not build src/ (exit ${code}); running src/ through tsx`);
    await remove();
    return undefined;
  }
  if (code !== 0) console.log(`bench: tsc reported errors (exit ${code}) but emitted; benchmarking its output`);
  await symlink(path.join(ROOT, "drizzle"), path.join(dir, "drizzle"));
  return { dist, remove };
}

let current: { child: ReturnType<typeof spawn>; schema: string } | undefined;

function runScenario(
  s: Scenario, url: string, schema: string, quick: boolean, out: string, dist: string | undefined,
): Promise<{ code: number | null; timedOut: boolean }> {
  const timeoutMs = (quick ? s.timeout.quick : s.timeout.full) * 1000;
  const argv = [
    ...process.execArgv, "--expose-gc", fileURLToPath(import.meta.url),
    "--child", s.id, "--schema", schema, "--url", url, "--out", out, ...(quick ? ["--quick"] : []),
  ];
  const env = { ...process.env };
  if (dist) env.PGTIDE_BENCH_DIST = dist;
  else delete env.PGTIDE_BENCH_DIST;
  const child = spawn(process.execPath, argv, { stdio: ["ignore", "inherit", "inherit"], cwd: ROOT, env });
  current = { child, schema };
  return new Promise((resolve) => {
    let timedOut = false;
    const term = setTimeout(() => {
      timedOut = true;
      console.log(`bench: ${s.id} overran its ${timeoutMs / 1000} s limit; stopping it`);
      child.kill("SIGTERM");
      setTimeout(() => child.kill("SIGKILL"), 3000).unref();
    }, timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(term);
      current = undefined;
      resolve({ code, timedOut });
    });
  });
}

async function createSchema(url: string, schema: string): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 5 });
  try {
    await sql.unsafe(`create schema "${schema}"`);
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}

/** Drops a scenario's schema, first ending any backend it left behind. */
async function dropSchema(url: string, schema: string): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 5 });
  try {
    await sql`
      select pg_terminate_backend(pid) from pg_stat_activity
      where pid <> pg_backend_pid()
        and (application_name like ${`pgtide:${schema}:%`} or application_name like ${`pgtide-bench:${schema}:%`})`;
    await sql`set lock_timeout = '10s'`;
    await sql.unsafe(`drop schema if exists "${schema}" cascade`);
  } catch (error) {
    console.error(`bench: could not drop schema ${schema}:`, (error as Error).message);
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}

async function main(args: Args): Promise<number> {
  const selected = args.only ? SCENARIOS.filter((s) => args.only!.includes(s.id)) : SCENARIOS;
  if (args.only && selected.length !== args.only.length) {
    console.error(`bench: unknown scenario in --only; known: ${SCENARIOS.map((s) => s.id).join(", ")}`);
    return 2;
  }
  const started = Date.now();
  const db = await database();
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    console.log("bench: interrupted; stopping the running scenario");
    current?.child.kill("SIGTERM");
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const results: (ScenarioResult | { id: string; title: string; error: string })[] = [];
  let failed = 0;
  const built = args.src ? undefined : await build();
  try {
    const info = await machine(db.url, db.where);
    info.pgtide = built ? "compiled by tsc (as `npm run build`)" : "src/ through tsx (esbuild keepNames: slower than the build)";
    console.log(`bench: pgtide ${info.pgtide}`);
    console.log(`bench: ${args.quick ? "quick" : "full"} mode, ${info.nproc} CPUs, PostgreSQL ${info.postgres} (${db.where}), Redis ${info.redis}, load ${info.loadBefore}`);
    const tmp = await mkdtemp(path.join(os.tmpdir(), "pgtide-bench-out-"));
    for (const s of selected) {
      if (interrupted) break;
      const schema = `bench_${s.id.replace(/-/g, "_")}_${suffix()}`;
      const out = path.join(tmp, `${s.id}.json`);
      console.log(`\n== ${s.title}  (schema ${schema})`);
      await createSchema(db.url, schema); // baselines may run before an Engine migrates it
      const { code, timedOut } = await runScenario(s, db.url, schema, args.quick, out, built?.dist);
      await dropSchema(db.url, schema);
      let parsed: ScenarioResult | { error: string } | undefined;
      try {
        parsed = JSON.parse(await readFile(out, "utf8"));
      } catch {
        parsed = undefined;
      }
      if (code === 0 && parsed && !("error" in parsed)) {
        results.push(parsed);
        for (const row of parsed.rows) console.log(`  ${describeRow(row).replace(/\n/g, "\n  ")}`);
        for (const t of parsed.targets) console.log(`  ${t.ok ? "✓" : "✗"} ${t.text}: ${t.measured}`);
        for (const n of parsed.notes) console.log(`  note: ${n}`);
        console.log(`  (${parsed.seconds.toFixed(1)} s)`);
      } else {
        failed++;
        const error = timedOut ? `timed out after ${args.quick ? s.timeout.quick : s.timeout.full} s`
          : parsed && "error" in parsed ? parsed.error.split("\n")[0]! : `exited with code ${code}`;
        results.push({ id: s.id, title: s.title, error });
        console.log(`  FAILED: ${error}`);
      }
    }
    await rm(tmp, { recursive: true, force: true });
    info.loadAfter = os.loadavg().map((l) => l.toFixed(2)).join(" ");
    const report: Report = {
      generatedAt: new Date().toISOString(),
      mode: args.quick ? "quick" : "full",
      seconds: (Date.now() - started) / 1000,
      machine: info,
      scenarios: results,
    };
    if (!args.only) {
      const analysis = await readFile(path.join(HERE, "NOTES.md"), "utf8").catch(() => undefined);
      await writeFile(path.join(ROOT, "BENCHMARKS.md"), renderMarkdown(report, analysis));
      await writeFile(path.join(HERE, "results.json"), `${JSON.stringify(report, null, 2)}\n`);
      console.log(`\nbench: wrote BENCHMARKS.md and bench/results.json (${report.seconds.toFixed(0)} s)`);
    } else {
      console.log(`\nbench: --only given, BENCHMARKS.md and bench/results.json left as they are (${report.seconds.toFixed(0)} s)`);
    }
  } finally {
    await built?.remove();
    await db.stop();
  }
  return interrupted ? 130 : failed > 0 ? 1 : 0;
}

const args = parseArgs(process.argv.slice(2));
if (process.argv.includes("--render")) {
  // After editing bench/NOTES.md: rewrite BENCHMARKS.md from bench/results.json, no run.
  const report = JSON.parse(await readFile(path.join(HERE, "results.json"), "utf8")) as Report;
  const analysis = await readFile(path.join(HERE, "NOTES.md"), "utf8").catch(() => undefined);
  await writeFile(path.join(ROOT, "BENCHMARKS.md"), renderMarkdown(report, analysis));
  console.log("bench: BENCHMARKS.md rewritten from bench/results.json");
  process.exit(0);
}
if (args.child) {
  await runChild(args);
} else {
  const code = await main(args).catch((error) => {
    console.error("bench:", error);
    return 1;
  });
  process.exit(code);
}
