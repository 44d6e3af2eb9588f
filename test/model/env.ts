// What every case of a property shares: the admin connection, schemas, engines opened
// the harness's way, the registry of hooks by workflow id, counters, and the
// process-level traps for unhandled rejections. Vitest-free, so the campaign script can
// run it as well as the test files.
import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { Engine } from "../../src/index.js";
import { within } from "../support/async.js";
import { registerInterpreter, type Hooks } from "./interpreter.js";
import { MAX_VALUE_BYTES, ModelError } from "./values.js";

export type Sql = postgres.Sql;

export interface Stats {
  cases: number;
  faults: Record<string, number>;
  startedAt: number;
}

export function newStats(): Stats {
  return { cases: 0, faults: {}, startedAt: Date.now() };
}

export function count(stats: Stats, what: string, n = 1): void {
  stats.faults[what] = (stats.faults[what] ?? 0) + n;
}

/** A case in progress receives the engines' "error" events and stray rejections. */
export interface Sink {
  engineErrors: { engine: string; error: unknown }[];
  unhandled: unknown[];
}

export interface OpenedEngine {
  label: string;
  schema: string;
  engine: Engine;
  wf: ReturnType<typeof registerInterpreter>;
  /** Set once close() was called (resolves when it has). */
  closing?: Promise<void>;
  closed: boolean;
}

export class ModelEnv {
  readonly registry = new Map<string, Hooks>();
  sink: Sink | undefined;
  private readonly schemas = new Set<string>();
  private readonly trap = (reason: unknown) => {
    if (this.sink) this.sink.unhandled.push(reason);
    else this.stray.push(reason);
  };
  /** Rejections nobody handled while no case was running. */
  readonly stray: unknown[] = [];
  /** Problems found between cases (reported with the property's result). */
  readonly problems: string[] = [];
  /** Late connections found so far (only the first few are described). */
  private lateSeen = 0;
  /** Cases whose engines were closed, newest last: to name the one a late connection belongs to. */
  readonly closedCases: { at: number; name: string; printed: string }[] = [];

  constructor(readonly url: string, readonly admin: Sql, readonly stats: Stats, readonly tag: string) {
    process.on("unhandledRejection", this.trap);
    process.on("uncaughtException", this.trap);
  }

  static create(url: string, stats = newStats()): ModelEnv {
    const admin = postgres(url, { max: 3, onnotice: () => {}, connection: { application_name: "model:admin" } });
    return new ModelEnv(url, admin, stats, randomBytes(3).toString("hex"));
  }

  schema(prefix: string): string {
    const name = `model_${prefix}_${this.tag}`;
    this.schemas.add(name);
    return name;
  }

  hooksFor = (workflowId: string): Hooks => this.registry.get(workflowId) ?? {};

  /** An engine the harness's way: interpreter registered, errors routed to the running case. */
  async open(schema: string, executorId: string, label: string, url = this.url, extra: { retryTimeoutMs?: number } = {}): Promise<OpenedEngine> {
    const engine = await Engine.open({
      databaseUrl: url, schema, executorId, heartbeatMs: 1000, errorClasses: [ModelError], maxValueBytes: MAX_VALUE_BYTES, ...extra,
    });
    engine.on("error", (error) => this.sink?.engineErrors.push({ engine: label, error }));
    const wf = registerInterpreter(engine, label, this.hooksFor);
    return { label, schema, engine, wf, closed: false };
  }

  /** Backends of a schema's engines still connected (pool and listener). */
  async backends(schema: string): Promise<number> {
    const [row] = await this.admin`select count(*)::int as n from pg_stat_activity where application_name like ${`pgtide:${schema}:%`}`;
    return row!.n as number;
  }

  /**
   * Waits (re-checking pg_stat_activity, which announces nothing) until a schema has no
   * backend left; returns what is left then, described ("" when none).
   */
  async noBackendsLeft(schema: string, ms = 5000): Promise<string> {
    const end = Date.now() + ms;
    for (let pause = 5; ; pause = Math.min(pause * 2, 100)) {
      const n = await this.backends(schema);
      if (n === 0) return "";
      if (Date.now() > end) {
        const rows = await this.admin`
          select application_name as app, state, left(query, 60) as query,
                 round(extract(epoch from now() - backend_start))::int as age
          from pg_stat_activity where application_name like ${`pgtide:${schema}:%`}`;
        return rows.map((r) => `${String(r.app).split(":").at(-1)} (${r.state}, ${r.age} s old, last query: ${JSON.stringify(r.query)})`).join("; ");
      }
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }

  /**
   * Connections of a schema's engines that are open although every engine there was
   * closed: each is named after the case whose engines closed last before it connected,
   * reported, and terminated (so the next case starts clean).
   */
  async lateConnections(schema: string, report = true): Promise<void> {
    const rows = await this.admin`
      select pid, application_name as app, state, left(query, 60) as query, backend_start
      from pg_stat_activity where application_name like ${`pgtide:${schema}:%`}`;
    for (const r of rows) {
      const started = (r.backend_start as Date).getTime();
      const culprit = [...this.closedCases].reverse().find((c) => c.at <= started);
      if (report && ++this.lateSeen > 3) {
        // The first three are printed in full; the rest only counted.
      } else if (report) this.problems.push(
        `a ${String(r.app).split(":").at(-1)} connection (${r.state}, last query ${JSON.stringify(r.query)}) connected at ${new Date(started).toISOString()}, ` +
          (culprit ? `after the engines of ${culprit.name} had closed (close() resolved at ${new Date(culprit.at).toISOString()}):\n${culprit.printed}` : "before any case closed its engines"),
      );
      await this.admin`select pg_terminate_backend(${r.pid as number})`;
    }
  }

  async close(): Promise<string[]> {
    process.off("unhandledRejection", this.trap);
    process.off("uncaughtException", this.trap);
    const problems: string[] = [...this.problems];
    if (this.lateSeen > 3) problems.push(`… and ${this.lateSeen - 3} more connections that connected after their engine's close() resolved`);
    for (const u of this.stray) problems.push(`unhandled rejection between cases: ${String((u as Error)?.stack ?? u)}`);
    for (const schema of this.schemas) {
      const left = await this.noBackendsLeft(schema).catch((e: unknown) => `unknown (${String(e)})`);
      if (left) problems.push(`connections of schema ${schema} left open after every engine closed: ${left}`);
      await this.admin.unsafe(`drop schema if exists "${schema}" cascade`).catch(() => {});
    }
    await this.admin.end({ timeout: 5 });
    return problems;
  }
}

/** Creates a finished workflow "ballast" whose stream "b" holds `entries` ~8 KB values (16 MB: several pages, for mid-result kills). */
export async function createBallast(env: ModelEnv, schema: string, entries = 2000): Promise<string> {
  const engine = await Engine.open({ databaseUrl: env.url, schema, executorId: "ballast", heartbeatMs: 1000 });
  try {
    const wf = engine.workflow("ballast", async (ctx, n: number) => {
      const pad = "p".repeat(8000);
      for (let i = 0; i < n; i += 250) {
        await Promise.all(Array.from({ length: Math.min(250, n - i) }, (_, k) => ctx.writeStream("b", { i: i + k, pad })));
      }
      return n;
    });
    const handle = await wf.start(entries, { workflowId: "ballast" });
    await within(60_000, "the ballast workflow", handle.getResult());
  } finally {
    await engine.close();
  }
  return "ballast";
}

/** A promise's outcome as data. */
export function settle<T>(promise: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  return promise.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }));
}

/** Resolves after `ms`, or rejects never: for races that turn a hang into a finding. */
export function after(ms: number): Promise<"timeout"> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve("timeout"), ms);
    t.unref?.();
  });
}

const CONNECTION_CODES = new Set([
  "CONNECTION", "ENGINE_CLOSED", "ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "CONNECTION_CLOSED", "CONNECTION_ENDED",
  "CONNECTION_DESTROYED", "CONNECT_TIMEOUT", "57P01", "57P02", "57P03",
]);

/** An engine "error" event that only says Postgres was away (expected under faults). */
export function isOutageError(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return typeof code === "string" && (CONNECTION_CODES.has(code) || code.startsWith("08"));
}

/** Violations a case's sink holds: stray rejections, and background failures that are not outages. */
export function sinkProblems(sink: Sink): string[] {
  const out: string[] = [];
  for (const u of sink.unhandled) {
    // postgres.js puts the statement on its errors (not enumerable): it tells whose query it was.
    const query = (u as { query?: unknown })?.query;
    const origin = typeof query === "string" ? ` (the query: ${JSON.stringify(query.replace(/\s+/g, " ").trim().slice(0, 120))})` : "";
    out.push(`unhandled rejection or uncaught exception${origin}: ${String((u as Error)?.stack ?? u)}`);
  }
  for (const { engine, error } of sink.engineErrors) {
    if (!isOutageError(error)) out.push(`engine ${engine} reported a background failure: ${String((error as Error)?.stack ?? error)}`);
  }
  return out;
}
