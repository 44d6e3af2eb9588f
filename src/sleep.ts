// The one abortable wait: timers that a signal cuts short.

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
