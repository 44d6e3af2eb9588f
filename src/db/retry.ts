// The one rule for a call to Postgres that meets an outage. Every statement pgtide runs
// for a caller is idempotent (see the README's "In an outage"), so a transient failure
// (isConnectionError) is met by running it again, with a capped backoff, until
// `timeoutMs` has passed; then the call rejects with ConnectionError. Whatever else the
// driver throws leaves here as a PgtideError too: the caller never sees a raw one.
import { AsyncLocalStorage } from "node:async_hooks";
import { ConnectionError, DatabaseError, EngineClosedError, PgtideError } from "../errors.js";
import { MAX_TIMER_MS, sleep } from "../sleep.js";
import { isConnectionError, type Sql } from "./connect.js";

/** The longest pause between two attempts. */
const MAX_PAUSE_MS = 1000;

/**
 * However small retryTimeoutMs is, an attempt gets this long to be answered: the
 * deadline bounds retrying, not a healthy server's answer (retryTimeoutMs 1 means "try
 * once", not "fail").
 */
const MIN_ATTEMPT_MS = 1000;

/**
 * The pause before attempt `failures + 1`: 20 ms doubling to 1 s, cut short by `signal`
 * (which rejects it with the signal's reason) and never longer than `atMostMs`.
 * Waiters (readers, getResult) use it with no bound: they give up only on their signal.
 */
export function backoff(failures: number, signal?: AbortSignal, atMostMs = MAX_PAUSE_MS): Promise<void> {
  return sleep(Math.min(20 * 2 ** Math.min(failures, 10), MAX_PAUSE_MS, atMostMs), signal);
}

export interface RetryOptions {
  /** Ends the retries with its reason (the engine's lifetime, a caller's signal). */
  signal?: AbortSignal;
  /**
   * Whether an attempt may also be abandoned at the deadline while it waits (default
   * true). postgres.js queues a query until a connection answers, however long that
   * takes; such a query is withdrawn (cancelled) when the call gives up, so it cannot run
   * later. The writer says false: its one batch in flight must end by itself, or a later
   * batch could commit around it.
   */
  bounded?: boolean;
}

/** The queries (postgres.js Query objects) made by the current attempt, to withdraw at its deadline. */
interface Withdrawable {
  executed?: boolean;
  cancel?: () => unknown;
  catch?: (onRejected: (error: unknown) => void) => unknown;
}
const attemptQueries = new AsyncLocalStorage<Set<Withdrawable>>();

/**
 * `sql`, noting each query it makes in the attempt that made it (see retrying), so that
 * an attempt given up on is withdrawn. Everything else passes through.
 */
export function withdrawable(sql: Sql): Sql {
  return new Proxy(sql, {
    apply(target, self, args) {
      const query = Reflect.apply(target, self, args) as Withdrawable;
      attemptQueries.getStore()?.add(query);
      return query;
    },
  });
}

/**
 * Runs an idempotent database call, again and again while the failure is transient, for
 * at most `timeoutMs`; then rejects with ConnectionError naming `what`.
 */
export async function retrying<T>(what: string, timeoutMs: number, call: () => Promise<T>, options: RetryOptions | AbortSignal = {}): Promise<T> {
  const { signal, bounded = true } = options instanceof AbortSignal ? { signal: options } : options;
  const deadline = Date.now() + timeoutMs;
  for (let failures = 0; ; failures++) {
    try {
      return await (bounded ? attempt(call, deadline) : attemptQueries.exit(call));
    } catch (error) {
      if (!isTransient(error)) throw asPgtideError(what, error);
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new ConnectionError(`${what}: Postgres unreachable for ${timeoutMs} ms (${messageOf(error)})`, error);
      }
      await backoff(failures, signal, left);
    }
  }
}

/**
 * The call, or a NO_ANSWER failure (transient) at the deadline, when the queries it made
 * that have not been answered are withdrawn: a queued one never runs, a running one is
 * cancelled by Postgres.
 */
async function attempt<T>(call: () => Promise<T>, deadline: number): Promise<T> {
  const queries = new Set<Withdrawable>();
  const running = attemptQueries.run(queries, call);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      for (const query of queries) {
        if (!query.executed) continue; // a fragment, never sent on its own
        query.catch?.(() => {}); // its rejection reaches the abandoned call, or nobody
        // A cancel sent to a server that is down fails: nobody's rejection either.
        Promise.resolve(query.cancel?.()).catch(() => {});
      }
      reject(new NoAnswerError());
    }, Math.min(Math.max(MIN_ATTEMPT_MS, deadline - Date.now()), MAX_TIMER_MS));
  });
  running.catch(() => {}); // given up on: what it does later is nobody's rejection
  try {
    return await Promise.race([running, late]);
  } finally {
    clearTimeout(timer);
  }
}

class NoAnswerError extends Error {
  readonly code = "NO_ANSWER";
  constructor() {
    super("no answer from Postgres");
    this.name = "NoAnswerError";
  }
}

/** A transient failure, or one wrapped by Drizzle (which keeps the driver's as `cause`). */
function isTransient(error: unknown): boolean {
  return isConnectionError(error) || isConnectionError((error as { cause?: unknown } | null)?.cause);
}

/**
 * A failure as a PgtideError: pgtide's own pass through; the pool closed under the call
 * (the engine is closing) is EngineClosedError; a transient failure is ConnectionError;
 * any other error of the driver or of Postgres is DatabaseError. Other values (bugs)
 * pass through unchanged.
 */
export function asPgtideError(what: string, error: unknown): unknown {
  if (error instanceof PgtideError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  // Drizzle wraps the driver's error ("Failed query: …") and keeps it as `cause`.
  if (typeof code !== "string") {
    const cause = (error as { cause?: unknown } | null)?.cause;
    if (typeof (cause as { code?: unknown } | null)?.code === "string") return asPgtideError(what, cause);
    return error;
  }
  if (code === "CONNECTION_ENDED" || code === "CONNECTION_DESTROYED") return new EngineClosedError();
  if (isConnectionError(error)) return new ConnectionError(`${what}: ${messageOf(error)}`, error);
  return new DatabaseError(`${what}: Postgres refused it (${code}: ${messageOf(error)})`, error);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
