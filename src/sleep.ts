// Abortable waits: timers, and other promises, that a signal cuts short.

/** The longest delay a Node timer honours: past it, Node fires after 1 ms instead. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Resolves after `ms` (at most MAX_TIMER_MS), or rejects with `signal`'s reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const abort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", abort);
      resolve();
    }, Math.min(ms, MAX_TIMER_MS));
    signal?.addEventListener("abort", abort, { once: true });
  });
}

/**
 * `promise`, or a rejection with `signal`'s reason as soon as it aborts. What `promise`
 * does afterwards is nobody's concern (a query left behind ends by itself).
 */
export function untilAborted<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return promise;
  promise.catch(() => {});
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const abort = () => reject(signal.reason);
    signal.addEventListener("abort", abort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", abort));
  });
}
