// Waiting on events with deadlines. A deadline only turns a hang into a failure that
// says what was awaited; it never orders anything.
import type { EventEmitter } from "node:events";

import { within as deadline } from "../../support/async.js";

/** Rejects if `promise` has not settled within `ms`. */
export { deadline };

/** The next emission of `event` (its first argument), within `ms`. */
export function nextEvent<T = unknown>(emitter: EventEmitter, event: string, ms: number): Promise<T> {
  let handler: (value: T) => void = () => {};
  const fired = new Promise<T>((resolve) => {
    handler = resolve;
    emitter.once(event, handler);
  });
  return deadline(ms, `event "${event}"`, fired).finally(() => emitter.off(event, handler));
}

/**
 * Re-checks a condition on something outside this process that announces nothing (rows
 * in another process's table, backends leaving pg_stat_activity) until it holds.
 */
export async function until(what: string, ms: number, condition: () => boolean | Promise<boolean>): Promise<void> {
  const end = Date.now() + ms;
  for (let pause = 5; !(await condition()); pause = Math.min(pause * 2, 100)) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
}

/** A promise with its resolver, for gates between a workflow and its test. */
export function signal<T = void>(): { promise: Promise<T>; resolve: (value: T) => void; done: boolean } {
  let resolve!: (value: T) => void;
  const s = {
    done: false,
    promise: new Promise<T>((r) => (resolve = r)),
    resolve: (value: T) => {
      s.done = true;
      resolve(value);
    },
  };
  return s;
}
