// What happened during a case, in order: runs started and ended, step attempts started
// (recorded by the step body itself, first thing), what each ctx call gave, and when a
// cancel or an engine close resolved. In one process `seq` orders everything exactly;
// events from other processes carry no comparable seq (seq = -1).
import type { Outcome } from "./values.js";

export type JournalEvent =
  | { kind: "run-start"; run: string }
  | { kind: "run-end"; run: string; outcome: Outcome | undefined }
  | { kind: "step-start"; run: string; op: number; attempt: number; token: string }
  | { kind: "outcome"; run: string; key: string; outcome: Outcome }
  | { kind: "cancel-resolved" }
  | { kind: "close-resolved"; engine: string }
  | { kind: "fault"; what: string };

export type Stamped = JournalEvent & { seq: number };

export class Journal {
  private seq = 0;
  readonly events: Stamped[] = [];
  private listeners = new Set<(e: Stamped) => void>();

  add(event: JournalEvent, seq = ++this.seq): Stamped {
    const stamped = { ...event, seq } as Stamped;
    this.events.push(stamped);
    for (const l of this.listeners) l(stamped);
    return stamped;
  }

  /** Resolves with the first event (recorded so far or later) that matches. */
  when(match: (e: Stamped) => boolean): Promise<Stamped> {
    const found = this.events.find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve) => {
      const listener = (e: Stamped) => {
        if (!match(e)) return;
        this.listeners.delete(listener);
        resolve(e);
      };
      this.listeners.add(listener);
    });
  }

  /** Runs in the order they started. */
  runs(): string[] {
    return this.events.filter((e) => e.kind === "run-start").map((e) => (e as { run: string }).run);
  }
}

/** The engine label of a run id ("E2#17" → "E2"). */
export function engineOf(run: string): string {
  return run.slice(0, run.lastIndexOf("#"));
}
