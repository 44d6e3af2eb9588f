// The three properties, each a fast-check search over (program, fault schedule) pairs,
// and the runner the test files and the campaign script share: a time budget for the
// search, another for shrinking, progress lines, and a report with the seed, the path,
// the shrunk case printed as code, and what it broke.
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import { startEmbeddedPostgres, type EmbeddedPostgres } from "../../src/db/embedded.js";
import { after, createBallast, ModelEnv, newStats, type Stats } from "./env.js";
import { runEngineCase, type PropertyEngines } from "./engineCase.js";
import { inProcessScheduleArb, killScheduleArb, printCase, restartScheduleArb, type Schedule } from "./faults.js";
import { KillWorld } from "./killCase.js";
import { printProgram, programArb, type Program } from "./program.js";

/**
 * retryTimeoutMs of the harness's engines: an engine that cannot get an answer from a
 * Postgres that is up (only connections were killed) for this long is broken, and a
 * hang shows up sooner than with the default 30 s.
 */
export const RETRY_TIMEOUT_MS = 5000;

export type Kind = "inprocess" | "kill" | "restart";
export const KINDS: Kind[] = ["inprocess", "kill", "restart"];

export interface CampaignOptions {
  kind: Kind;
  url: string;
  /** Cases to generate (fewer run if the budget ends first). */
  runs: number;
  seed?: number;
  path?: string;
  /** No new case starts after this long (ms); shrinking has its own budget. */
  budgetMs?: number;
  shrinkBudgetMs?: number;
  /** Survey: never stop at a failure; group every violation by its kind, keep the smallest example of each. */
  survey?: boolean;
  /** Only violations matching this count as failures (to shrink toward one kind of failure). */
  focus?: RegExp;
  log?: (line: string) => void;
}

export interface CampaignResult {
  kind: Kind;
  /** Cases actually run (shrinking included). */
  ran: number;
  ms: number;
  stats: Stats;
  failed: boolean;
  seed: number;
  path?: string;
  report: string;
}

interface Case {
  program: Program;
  schedule: Schedule;
}

interface World {
  run(c: Case): Promise<string[]>;
  close(): Promise<string[]>;
}

function caseArb(schedule: fc.Arbitrary<Schedule>): fc.Arbitrary<Case> {
  return fc.tuple(programArb, schedule).map(([program, s]) => {
    const c = { program, schedule: s };
    Object.defineProperty(c, fc.toStringMethod, { value: () => `\n${printCase(program, s, printProgram)}\n`, enumerable: false });
    return c;
  });
}

async function inProcessWorld(url: string, stats: Stats): Promise<World> {
  const env = ModelEnv.create(url, stats);
  const a = env.schema("a");
  const b = env.schema("b");
  const ballast = new Map<string, string>();
  ballast.set(a, await createBallast(env, a));
  ballast.set(b, await createBallast(env, b));
  const engineOptions = { retryTimeoutMs: RETRY_TIMEOUT_MS };
  const engines: PropertyEngines = { env, shared: await env.open(a, "shared", "A", undefined, engineOptions), caseSchema: b, ballast, engineOptions };
  return {
    run: async (c) => {
      const violations = await runEngineCase(engines, c.program, c.schedule);
      if (violations.length > 0) {
        // A failing case may leave the shared engine broken: the next case gets a fresh one.
        await Promise.race([engines.shared!.engine.close().catch(() => {}), after(10_000)]);
        const fresh = await Promise.race([env.open(a, "shared", "A", undefined, engineOptions), after(30_000)]);
        if (fresh === "timeout") throw new Error("could not open a fresh shared engine within 30 s");
        engines.shared = fresh;
      }
      return violations;
    },
    close: async () => {
      await env.lateConnections(b);
      const closed = await Promise.race([engines.shared!.engine.close().then(() => "closed"), after(15_000)]);
      const problems = await env.close();
      return closed === "timeout" ? ["the shared engine's close() did not settle within 15 s", ...problems] : problems;
    },
  };
}

async function restartWorld(stats: Stats): Promise<World> {
  const dir = await mkdtemp(path.join(tmpdir(), "pgtide-model-"));
  await chmod(dir, 0o755); // the postgres user must reach the data dir
  let pg: EmbeddedPostgres = await startEmbeddedPostgres({ dataDir: path.join(dir, "pgdata") });
  const env = ModelEnv.create(pg.url, stats);
  const schema = env.schema("r");
  const engines: PropertyEngines = {
    env, caseSchema: schema, ballast: new Map(), engineOptions: { retryTimeoutMs: 2000 },
    postgres: {
      stop: () => pg.stop(),
      start: async () => {
        pg = await startEmbeddedPostgres({ dataDir: pg.dataDir, port: pg.port });
      },
    },
  };
  return {
    run: (c) => runEngineCase(engines, c.program, c.schedule),
    close: async () => {
      const problems = await env.close();
      await pg.stop();
      await rm(dir, { recursive: true, force: true });
      return problems;
    },
  };
}

export async function runCampaign(options: CampaignOptions): Promise<CampaignResult> {
  const log = options.log ?? (() => {});
  const stats = newStats();
  const started = Date.now();
  const world =
    options.kind === "inprocess" ? await inProcessWorld(options.url, stats)
    : options.kind === "restart" ? await restartWorld(stats)
    : await KillWorld.open(options.url, stats);
  const budget = started + (options.budgetMs ?? Number.POSITIVE_INFINITY);
  let shrinkEnd: number | undefined;
  let ran = 0;
  let failures = 0;
  let lastLog = Date.now();
  let lastViolations: string[] = [];
  const survey = new Map<string, { count: number; example: string; violation: string; replay: string }>();
  const schedule = options.kind === "inprocess" ? inProcessScheduleArb : options.kind === "kill" ? killScheduleArb : restartScheduleArb;

  // Chosen here (not by fast-check) so that a survey can name the replay of each case.
  const seed = options.seed ?? (Date.now() ^ Math.floor(Math.random() * 0x7fffffff)) | 0;
  let index = -1;
  const property = fc.asyncProperty(caseArb(schedule), async (c) => {
    index++;
    const now = Date.now();
    if (shrinkEnd === undefined ? now > budget : now > shrinkEnd) return; // out of budget: counts as a pass
    ran++;
    const all = await world.run(c).catch((error: unknown) => [`the harness itself failed: ${String((error as Error)?.stack ?? error)}`]);
    const violations = options.focus ? all.filter((v) => options.focus!.test(v)) : all;
    if (Date.now() - lastLog > 5000 || ran % 50 === 0) {
      lastLog = Date.now();
      const secs = (Date.now() - started) / 1000;
      log(`[${options.kind}] ${ran} cases in ${secs.toFixed(0)} s (${(ran / secs).toFixed(1)}/s)${failures > 0 ? `, shrinking a failure (${failures} failing runs so far)` : ""}`);
    }
    if (violations.length > 0 && options.survey) {
      failures++;
      for (const v of violations) {
        const sig = signature(v);
        const printed = printCase(c.program, c.schedule, printProgram);
        const seen = survey.get(sig);
        const replay = options.path === undefined ? `--seed ${seed} --path ${index}` : `--seed ${seed} --path ${options.path}`;
        if (!seen) log(`[${options.kind}] new kind of failure (${replay}): ${v.slice(0, 300)}`);
        if (!seen || printed.length < seen.example.length) survey.set(sig, { count: (seen?.count ?? 0) + 1, example: printed, violation: v, replay });
        else seen.count++;
      }
      return;
    }
    if (violations.length > 0) {
      failures++;
      shrinkEnd ??= Date.now() + (options.shrinkBudgetMs ?? Number.POSITIVE_INFINITY);
      lastViolations = violations;
      throw new Error(violations.map((v) => `  - ${v}`).join("\n"));
    }
  });

  let details: fc.RunDetails<[Case]>;
  let closeProblems: string[] = [];
  try {
    details = await fc.check(property, {
      numRuns: options.runs,
      seed,
      ...(options.path === undefined ? {} : { path: options.path }),
    });
  } finally {
    closeProblems = await world.close();
  }
  const ms = Date.now() - started;
  let report = `[${options.kind}] ${ran} cases in ${(ms / 1000).toFixed(1)} s (${(ran / (ms / 1000)).toFixed(2)} cases/s), seed ${details.seed}\n` +
    `faults injected: ${Object.entries(stats.faults).map(([k, n]) => `${k} ×${n}`).join(", ") || "none"}`;
  const failed = details.failed || closeProblems.length > 0 || survey.size > 0;
  if (details.failed) {
    const c = details.counterexample?.[0];
    report += `\n\nFAILED after ${details.numRuns} cases and ${details.numShrinks} shrinks.` +
      `\nreplay: npm run test:model -- --kind ${options.kind} --seed ${details.seed} --path ${details.counterexamplePath}` +
      (c ? `\n\nshrunk case:\n${printCase(c.program, c.schedule, printProgram)}` : "") +
      `\n\nwhat broke:\n${lastViolations.map((v) => `  - ${v}`).join("\n")}`;
  }
  if (options.survey) {
    report += `\n\nsurvey: ${failures} failing cases, ${survey.size} kinds of violation`;
    for (const [sig, { count, example, violation, replay }] of [...survey].sort((a, b) => b[1].count - a[1].count)) {
      report += `\n\n### ×${count}: ${sig}\n${violation}\nsmallest example (replay and shrink: npm run test:model -- --kind ${options.kind} ${replay}):\n${example}`;
    }
  }
  if (closeProblems.length > 0) report += `\n\nafter the property:\n${closeProblems.map((p) => `  - ${p}`).join("\n")}`;
  return {
    kind: options.kind, ran, ms, stats, failed, seed: details.seed,
    ...(details.counterexamplePath ? { path: details.counterexamplePath } : {}),
    report,
  };
}

/** A violation with its particulars (ids, numbers, quoted text) blanked: its kind. */
export function signature(violation: string): string {
  return violation
    .replace(/"(?:[^"\\]|\\.)*"/g, '"…"')
    .replace(/\b[EAWR]\d+#\d+(\.\d+)*/g, "<run>")
    .replace(/m\d+-[0-9a-f]{6}/g, "<id>")
    .replace(/-?\d+(\.\d+)?(e[+-]?\d+)?/g, "N")
    .replace(/\s+at .*$/s, "")
    .slice(0, 200);
}
