// postgres.js instances, all pointed at the engine's schema through search_path, and
// the rule for which failures are the connection's fault (and so worth retrying).
import postgres from "postgres";
import { answerWatchedSockets } from "./answerWatch.js";

export type Sql = postgres.Sql;

export interface ConnectOptions {
  url: string;
  schema: string;
  /** Shown in pg_stat_activity, so tests and operators can count our connections. */
  role: "pool" | "listener" | "migrator";
  max: number;
  onnotify?: (channel: string, payload: string) => void;
  onclose?: () => void;
  /** A connection owed an answer this long is taken for dead (answerWatch.ts). Pool only. */
  quietMs?: number;
}

/** How long one connection attempt may take before it fails. */
export const CONNECT_TIMEOUT_MS = 10_000;

export function connect(options: ConnectOptions): Sql {
  return postgres(options.url, {
    max: options.max,
    // The listener must never be recycled behind our back; the pool may idle out.
    idle_timeout: options.role === "listener" ? 0 : 30,
    max_lifetime: options.role === "listener" ? 0 : null,
    connect_timeout: CONNECT_TIMEOUT_MS / 1000,
    // Seconds before a closed connection reconnects. The driver's default grows with every
    // failed attempt up to 20 s, so after an outage the pool sat idle long after Postgres
    // was back, and a call made then waited out its retryTimeoutMs for a connection
    // (a launch() right after an outage abandoned its runs); cap it at 250 ms.
    backoff: (retries: number) => Math.min(0.02 * 2 ** retries, 0.25),
    // Offsets are bigint in the table; as JS numbers they are exact up to 2^53.
    types: { int8: { to: 20, from: [20], serialize: (n: number) => String(n), parse: (s: string) => Number(s) } },
    onnotice: () => {},
    ...(options.onnotify ? { onnotify: options.onnotify } : {}),
    ...(options.onclose ? { onclose: options.onclose } : {}),
    ...(options.quietMs && !usesTls(options.url) ? { socket: answerWatchedSockets(options.quietMs) } : {}),
    connection: {
      search_path: options.schema,
      application_name: applicationName(options.schema, options.role),
    },
  });
}

/**
 * Whether postgres.js will speak TLS on this URL. The answer watch needs a plain socket
 * of its own: postgres.js wraps a TLS socket after dropping the plain one's listeners,
 * and takes the server name for SNI from a socket it made itself.
 */
function usesTls(url: string): boolean {
  return /[?&](ssl|sslmode|sslrootcert)=(?!(disable|false)(&|$))/i.test(url);
}

export function applicationName(schema: string, role: ConnectOptions["role"]): string {
  return `pgtide:${schema}:${role}`;
}

/**
 * Failures that say nothing about the statement, only that Postgres could not run it now:
 * the connection (class 08, resets, timeouts), a server starting or stopping (57P0x),
 * out of resources (class 53: too many connections, disk or memory full), a transaction
 * that lost a race (40001, 40P01), a lock or statement timeout (55P03, 57014), a
 * read-only server during a failover (25006), a result broken by a dropped connection
 * (BROKEN_RESULT, see rows.ts), and no answer by a call's deadline (NO_ANSWER, see
 * retry.ts). Running the same idempotent statement again is the cure.
 */
const TRANSIENT_CODES = new Set([
  "ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN",
  "ENOTFOUND", // a name DNS does not know (yet: a container's service name before it starts)
  // Not CONNECTION_ENDED / CONNECTION_DESTROYED: those mean we closed the pool ourselves.
  "CONNECTION_CLOSED", "CONNECT_TIMEOUT", "BROKEN_RESULT", "NO_ANSWER",
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now (starting up or shutting down)
  "57014", // query_canceled (statement_timeout)
  "55P03", // lock_not_available (lock_timeout)
  "40001", // serialization_failure
  "40P01", // deadlock_detected
  "25006", // read_only_sql_transaction (a standby, mid-failover)
]);

export function isConnectionError(error: unknown): boolean {
  if (typeof error !== "object" || error === null) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code !== "string") return false;
  return TRANSIENT_CODES.has(code) || code.startsWith("08") || code.startsWith("53");
}
