// The one rule for a call to Postgres that meets an outage. Every statement pgtide runs
// for a caller is idempotent (see the README's "In an outage"), so a transient failure
// (isConnectionError) is met by running it again, with a capped backoff, until
// `timeoutMs` has passed; then the call rejects with ConnectionError. Whatever else the
// driver throws leaves here as a PgtideError too: the caller never sees a raw one.
import { ConnectionError, DatabaseError, EngineClosedError, PgtideError } from "../errors.js";
import { sleep } from "../sleep.js";
import { isConnectionError } from "./connect.js";

/** The longest pause between two attempts. */
const MAX_PAUSE_MS = 1000;

/**
 * The pause before attempt `failures + 1`: 20 ms doubling to 1 s, cut short by `signal`
 * (which rejects it with the signal's reason) and never longer than `atMostMs`.
 * Waiters (readers, getResult) use it with no bound: they give up only on their signal.
 */
export function backoff(failures: number, signal?: AbortSignal, atMostMs = MAX_PAUSE_MS): Promise<void> {
  return sleep(Math.min(20 * 2 ** Math.min(failures, 10), MAX_PAUSE_MS, atMostMs), signal);
}

/**
 * Runs an idempotent database call, again and again while the failure is transient, for
 * at most `timeoutMs`; then rejects with ConnectionError naming `what`. `signal` (the
 * engine's lifetime, a caller's signal) ends the retries with its reason.
 */
export async function retrying<T>(what: string, timeoutMs: number, call: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let failures = 0; ; failures++) {
    try {
      return await call();
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
