// postgres.js instances, all pointed at the engine's schema through search_path, and
// the rule for which failures are the connection's fault (and so worth retrying).
import postgres from "postgres";
import { ConnectionError } from "../errors.js";

export type Sql = postgres.Sql;

export interface ConnectOptions {
  url: string;
  schema: string;
  /** Shown in pg_stat_activity, so tests and operators can count our connections. */
  role: "pool" | "listener" | "migrator";
  max: number;
  onnotify?: (channel: string, payload: string) => void;
  onclose?: () => void;
}

export function connect(options: ConnectOptions): Sql {
  return postgres(options.url, {
    max: options.max,
    // The listener must never be recycled behind our back; the pool may idle out.
    idle_timeout: options.role === "listener" ? 0 : 30,
    max_lifetime: options.role === "listener" ? 0 : null,
    connect_timeout: 10,
    // Seconds before a closed connection reconnects. The driver's default grows with every
    // failed attempt up to 20 s, so after an outage the pool sat idle long after Postgres
    // was back (and a launch() with a short retryTimeoutMs gave up); cap it at 1 s.
    backoff: (retries: number) => Math.min(0.02 * 2 ** retries, 1),
    // Offsets are bigint in the table; as JS numbers they are exact up to 2^53.
    types: { int8: { to: 20, from: [20], serialize: (n: number) => String(n), parse: (s: string) => Number(s) } },
    onnotice: () => {},
    ...(options.onnotify ? { onnotify: options.onnotify } : {}),
    ...(options.onclose ? { onclose: options.onclose } : {}),
    connection: {
      search_path: options.schema,
      application_name: applicationName(options.schema, options.role),
    },
  });
}

export function applicationName(schema: string, role: ConnectOptions["role"]): string {
  return `pgtide:${schema}:${role}`;
}

const CONNECTION_CODES = new Set([
  "ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH",
  // Not CONNECTION_ENDED / CONNECTION_DESTROYED: those mean we closed the pool ourselves.
  "CONNECTION_CLOSED", "CONNECT_TIMEOUT",
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now (starting up or shutting down)
]);

export function isConnectionError(error: unknown): boolean {
  if (typeof error !== "object" || error === null) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code !== "string") return false;
  return CONNECTION_CODES.has(code) || code.startsWith("08");
}

/**
 * The pause before a waiter (a reader, getResult) that hit a connection error looks
 * again: 20 ms doubling to 1 s. Waiters never give up on their own, only on `signal`.
 */
export function backoff(failures: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const abort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", abort);
      resolve();
    }, Math.min(20 * 2 ** failures, 1000));
    signal?.addEventListener("abort", abort, { once: true });
  });
}

/**
 * Runs an idempotent database call, retrying while Postgres is unreachable, with capped
 * backoff, for at most `timeoutMs`; then rejects with ConnectionError.
 */
export async function retryWhileUnreachable<T>(what: string, timeoutMs: number, call: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 25; ; delay = Math.min(delay * 2, 1000)) {
    try {
      return await call();
    } catch (error) {
      if (!isConnectionError(error)) throw error;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new ConnectionError(`${what}: Postgres unreachable for ${timeoutMs} ms (${String((error as Error).message)})`, error);
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(delay, left)));
    }
  }
}
