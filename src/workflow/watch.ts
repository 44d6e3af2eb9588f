// Waiters for workflows to leave PENDING, woken by the status trigger's NOTIFY (and by
// every listener reconnect, after which they re-check).
export class WorkflowWatch {
  private waiters = new Map<string, Set<() => void>>();

  /** Registers before the caller reads the status, so no wake-up is missed. */
  subscribe(workflowId: string): { changed: (signal?: AbortSignal) => Promise<void>; close: () => void } {
    // A wake-up with nobody waiting is kept for the next wait: it can come while the
    // caller re-reads the status after the previous one (a reconnect, then the NOTIFY).
    let owed = false;
    let waiting: (() => void) | undefined;
    const listener = () => {
      const wake = waiting;
      waiting = undefined;
      if (wake) wake();
      else owed = true;
    };
    let set = this.waiters.get(workflowId);
    if (!set) this.waiters.set(workflowId, (set = new Set()));
    set.add(listener);
    return {
      changed: (signal) =>
        new Promise<void>((resolve, reject) => {
          if (owed) {
            owed = false;
            return resolve();
          }
          if (signal?.aborted) return reject(signal.reason);
          const abort = () => {
            waiting = undefined;
            reject(signal!.reason);
          };
          signal?.addEventListener("abort", abort, { once: true });
          waiting = () => {
            signal?.removeEventListener("abort", abort);
            resolve();
          };
        }),
      close: () => {
        set.delete(listener);
        if (set.size === 0 && this.waiters.get(workflowId) === set) this.waiters.delete(workflowId);
      },
    };
  }

  notify(workflowId: string): void {
    for (const listener of this.waiters.get(workflowId) ?? []) listener();
  }

  notifyAll(): void {
    for (const set of this.waiters.values()) for (const listener of set) listener();
  }
}
