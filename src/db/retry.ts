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
   * Which of an attempt's queries are withdrawn when it is given up at the deadline.
   * postgres.js queues a query until a connection answers, however long that takes; a
   * withdrawn one is cancelled, so it cannot run later.
   * - "any" (the default): all of them; a running one is cancelled by Postgres.
   * - "unsent": only while none of them is on the wire. The writer's: its one batch in
   *   flight must end by itself, or a later batch could commit around it; one still
   *   queued for a connection has not run and never will, so a refusing or silent server
   *   cannot hold the call past the deadline (a sent one is ended by the answer watch).
   * - "none": the attempt runs to its end (opening: a first connection gets its whole
   *   connect timeout, however small retryTimeoutMs is).
   */
  withdraw?: "any" | "unsent" | "none";
}

/** The queries (postgres.js Query objects) made by the current attempt, to withdraw at its deadline. */
interface Withdrawable {
  executed?: boolean;
  /** Set when the query is written to a connection. */
  state?: unknown;
  cancel?: () => unknown;
  then?: (onFulfilled: () => void, onRejected: () => void) => unknown;
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
  const { signal, withdraw = "any" } = options instanceof AbortSignal ? { signal: options } : options;
  const deadline = Date.now() + timeoutMs;
  for (let failures = 0; ; failures++) {
    try {
      return await (withdraw === "none" ? attemptQueries.exit(call) : attempt(call, deadline, withdraw));
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
 * cancelled by Postgres. With "unsent", while one is on the wire the attempt waits on.
 */
async function attempt<T>(call: () => Promise<T>, deadline: number, withdraw: "any" | "unsent"): Promise<T> {
  const queries = new Set<Withdrawable>();
  const running = attemptQueries.run(queries, call);
  let timer: NodeJS.Timeout | undefined;
  let over = false;
  const late = new Promise<never>((_, reject) => {
    const giveUp = async () => {
      // Fragments are never sent on their own; an executed query may be asked for its
      // outcome without side effects, and a settled one reports within a turn.
      const executed = [...queries].filter((query) => query.executed);
      const settled = new Set<Withdrawable>();
      for (const query of executed) query.then?.(() => settled.add(query), () => settled.add(query));
      await new Promise((resolve) => setImmediate(resolve));
      const pending = executed.filter((query) => !settled.has(query));
      if (over) return;
      if (withdraw === "unsent" && pending.some((query) => query.state)) {
        timer = setTimeout(() => void giveUp(), RECHECK_MS);
        return;
      }
      for (const query of pending) {
        query.catch?.(() => {}); // its rejection reaches the abandoned call, or nobody
        // A cancel sent to a server that is down fails: nobody's rejection either.
        Promise.resolve(query.cancel?.()).catch(() => {});
      }
      reject(new NoAnswerError());
    };
    timer = setTimeout(() => void giveUp(), Math.min(Math.max(MIN_ATTEMPT_MS, deadline - Date.now()), MAX_TIMER_MS));
  });
  running.catch(() => {}); // given up on: what it does later is nobody's rejection
  try {
    return await Promise.race([running, late]);
  } finally {
    over = true;
    clearTimeout(timer);
  }
}

/** How often an attempt past its deadline looks again whether its query left the wire. */
const RECHECK_MS = 100;

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
