// Engine options, their defaults, and the one place they are checked and resolved.
import { databaseUrlProblem } from "./db/databaseUrl.js";
import { redactUrl } from "./db/redact.js";
import { InvalidArgumentError } from "./errors.js";
import { MAX_TIMER_MS } from "./sleep.js";
import { assertName, assertSchemaName, describe } from "./validate.js";

export type ErrorClass = new (...args: never[]) => Error;

export interface EngineOptions {
  /** Postgres to use. @default process.env.DATABASE_URL, else an embedded Postgres in `dataDir` */
  databaseUrl?: string;
  /** Schema holding every table, function and trigger. @default "pgtide" */
  schema?: string;
  /** Recovery (`launch()`) resumes the PENDING workflows started under this id. @default "local" */
  executorId?: string;
  /** Data directory of the embedded Postgres. @default ".pgtide/pgdata" */
  dataDir?: string;
  /** Query connections (the listener has one more of its own), 1–1000. @default 2 */
  poolSize?: number;
  /** Largest stream value, step output or workflow input/output, as JSON bytes (at most 64 MiB). @default 1048576 */
  maxValueBytes?: number;
  /** Error classes to rebuild when a stored step or workflow error is replayed. @default [] */
  errorClasses?: ErrorClass[];
  /** How often the listener checks that its LISTEN is alive, and how long the check may take (≥ 100). @default 5000 */
  heartbeatMs?: number;
  /** How long a call keeps retrying while Postgres is unreachable before it rejects with ConnectionError. @default 30000 */
  retryTimeoutMs?: number;
}

export interface ResolvedOptions {
  databaseUrl: string | undefined;
  schema: string;
  executorId: string;
  dataDir: string;
  poolSize: number;
  maxValueBytes: number;
  errorClasses: ErrorClass[];
  heartbeatMs: number;
  retryTimeoutMs: number;
}

const KNOWN = new Set([
  "databaseUrl", "schema", "executorId", "dataDir", "poolSize",
  "maxValueBytes", "errorClasses", "heartbeatMs", "retryTimeoutMs",
]);

/**
 * Whole numbers only, within these bounds. The times are timers, and Node fires a timer
 * set past 2^31 − 1 ms after 1 ms instead (a heartbeat every millisecond); a heartbeat
 * under 100 ms would take the listener down for a slow answer. A value must fit in one
 * query parameter and one reader page with room to spare: 64 MiB (jsonb's own ceiling is
 * 255 MiB, V8's longest string ~512 M characters).
 */
const RANGES = {
  poolSize: [1, 1000],
  maxValueBytes: [1, 64 * 1024 * 1024],
  heartbeatMs: [100, MAX_TIMER_MS],
  retryTimeoutMs: [1, MAX_TIMER_MS],
} as const;

function assertOptionalInRange(name: string, value: unknown, min: number, max: number): void {
  if (value === undefined) return;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}, got ${describe(value)}`);
  }
}

export function resolveOptions(options: EngineOptions = {}): ResolvedOptions {
  if (typeof options !== "object" || options === null) {
    throw new InvalidArgumentError(`Engine.open options must be an object, got ${describe(options)}`);
  }
  for (const [name, value] of Object.entries(options)) {
    if (!KNOWN.has(name)) throw new InvalidArgumentError(`unknown option "${name}"`);
    // null is a wrong value, not "use the default": only a missing option defaults.
    if (value === null && !(name in RANGES)) {
      throw new InvalidArgumentError(`option "${name}" must not be null (leave it out for the default)`);
    }
  }
  const databaseUrl = options.databaseUrl ?? (process.env.DATABASE_URL || undefined);
  if (databaseUrl !== undefined) assertDatabaseUrl(databaseUrl);
  const schema = options.schema ?? "pgtide";
  assertSchemaName(schema);
  const executorId = options.executorId ?? "local";
  assertName("executorId", executorId);
  const dataDir = options.dataDir ?? ".pgtide/pgdata";
  if (typeof dataDir !== "string" || dataDir === "" || dataDir.includes("\u0000")) {
    throw new InvalidArgumentError(`dataDir must be a non-empty path without NUL characters, got ${describe(dataDir)}`);
  }
  for (const [name, [min, max]] of Object.entries(RANGES) as [keyof typeof RANGES, [number, number]][]) {
    assertOptionalInRange(name, options[name], min, max);
  }
  const errorClasses = options.errorClasses ?? [];
  if (!Array.isArray(errorClasses) || errorClasses.some((c) => typeof c !== "function")) {
    throw new InvalidArgumentError("errorClasses must be an array of Error classes");
  }
  return {
    databaseUrl,
    schema,
    executorId,
    dataDir,
    poolSize: options.poolSize ?? 2,
    maxValueBytes: options.maxValueBytes ?? 1024 * 1024,
    errorClasses,
    heartbeatMs: options.heartbeatMs ?? 5000,
    retryTimeoutMs: options.retryTimeoutMs ?? 30_000,
  };
}

/** A URL postgres.js accepts; the message shows it with its passwords hidden (redactUrl). */
function assertDatabaseUrl(url: unknown): asserts url is string {
  if (typeof url !== "string") {
    throw new InvalidArgumentError(`databaseUrl must be a postgres:// URL, got ${describe(url)}`);
  }
  const problem = databaseUrlProblem(url);
  if (problem) throw new InvalidArgumentError(`databaseUrl ${problem}, got ${redactUrl(url)}`);
}

/** The NOTIFY channel of a schema: distinct per schema, so engines never hear each other. */
export function channelOf(schema: string): string {
  return `pgtide.${schema}`;
}
