// The one judge of every scenario: a reader that starts at offset `from` must see each
// offset from..total-1 exactly once, in order, with its value, and then the close.
import { isDeepStrictEqual } from "node:util";
import { deadline } from "./wait.js";

export interface SequenceCounts {
  readers: number;
  /** Entries delivered, over all readers. */
  read: number;
  /** Offsets in a reader's range that it never saw. */
  lost: number;
  /** Offsets a reader saw more than once. */
  duplicated: number;
  /** Entries delivered after one with a higher offset. */
  reordered: number;
  /** Entries whose value was not the one written at that offset, or whose offset was past the end. */
  wrong: number;
  /** Readers that did not end with the close. */
  unclosed: number;
  /** Readers that ended with an error. */
  failed: number;
  /** The first few problems, in words. */
  problems: string[];
}

export const NO_COUNTS: SequenceCounts = Object.freeze({
  readers: 0, read: 0, lost: 0, duplicated: 0, reordered: 0, wrong: 0, unclosed: 0, failed: 0, problems: [],
});

export class SequenceChecker {
  /** Every offset in [from, contiguous) has been seen. */
  private contiguous: number;
  /** Offsets seen beyond a gap (empty unless something went wrong). */
  private readonly ahead = new Set<number>();
  private highest = -1;
  private read = 0;
  private duplicated = 0;
  private reordered = 0;
  private wrong = 0;
  private closed = false;
  private error: unknown;
  private readonly problems: string[] = [];
  private waiters: { n: number; resolve: () => void; reject: (error: Error) => void }[] = [];

  constructor(
    readonly name: string,
    readonly from: number,
    /** The value written at an offset. */
    private readonly expected: (offset: number) => unknown,
    /** Entries the stream will hold (the close excluded), when known up front. */
    readonly total?: number,
  ) {
    this.contiguous = from;
  }

  /** The next offset this reader is owed. */
  get next(): number {
    return this.contiguous;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get failure(): unknown {
    return this.error;
  }

  entry(offset: number, value: unknown): void {
    this.read++;
    if (this.closed) this.problem(`entry ${offset} after the close`);
    if (offset < this.contiguous || this.ahead.has(offset)) {
      this.duplicated++;
      this.problem(`offset ${offset} again`);
    } else {
      if (offset < this.highest) {
        this.reordered++;
        this.problem(`offset ${offset} after ${this.highest}`);
      } else if (offset > this.contiguous) {
        this.problem(`offset ${offset} while ${this.contiguous} is owed`);
      }
      if (offset < this.from || (this.total !== undefined && offset >= this.total)) {
        this.wrong++;
        this.problem(`offset ${offset} outside [${this.from}, ${this.total})`);
      } else if (!isDeepStrictEqual(value, this.expected(offset))) {
        this.wrong++;
        this.problem(`offset ${offset} holds ${JSON.stringify(value)?.slice(0, 80)}, expected ${JSON.stringify(this.expected(offset))?.slice(0, 80)}`);
      }
      if (offset === this.contiguous) {
        this.contiguous++;
        while (this.ahead.delete(this.contiguous)) this.contiguous++;
      } else {
        this.ahead.add(offset);
      }
    }
    this.highest = Math.max(this.highest, offset);
    if (this.waiters.length > 0) this.wake();
  }

  close(): void {
    this.closed = true;
    this.wake();
  }

  fail(error: unknown): void {
    this.error = error;
    this.problem(`failed: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
    this.wake();
  }

  /**
   * Resolves once this reader has every offset below `n` (at once if its range starts at
   * or after `n`); rejects at the deadline, or if the reader ends short of `n`.
   */
  reached(n: number, ms: number): Promise<void> {
    if (n <= this.contiguous) return Promise.resolve();
    const ended = () => this.closed || this.error !== undefined;
    if (ended()) return Promise.reject(new Error(`${this.name} ended at ${this.contiguous}, short of ${n}`));
    return deadline(ms, `${this.name} to reach offset ${n} (it has ${this.contiguous})`, new Promise<void>((resolve, reject) => {
      this.waiters.push({ n, resolve, reject });
    }));
  }

  /** This reader's counts; `total` is how many entries the stream holds in the end. */
  counts(total = this.total): SequenceCounts {
    if (total === undefined) throw new Error(`${this.name}: the stream's total is not known`);
    let seen = Math.max(0, Math.min(this.contiguous, total) - this.from);
    for (const offset of this.ahead) if (offset >= this.from && offset < total) seen++;
    const lost = Math.max(0, total - this.from) - seen;
    const problems = [...this.problems];
    if (lost > 0) problems.push(`${lost} offsets never seen (first owed: ${this.contiguous})`);
    if (!this.closed && this.error === undefined) problems.push("no close");
    return {
      readers: 1,
      read: this.read,
      lost,
      duplicated: this.duplicated,
      reordered: this.reordered,
      wrong: this.wrong,
      unclosed: this.closed ? 0 : 1,
      failed: this.error === undefined ? 0 : 1,
      problems: problems.slice(0, 5).map((p) => `${this.name}: ${p}`),
    };
  }

  private problem(text: string): void {
    if (this.problems.length < 5) this.problems.push(text);
  }

  private wake(): void {
    const ended = this.closed || this.error !== undefined;
    const keep: typeof this.waiters = [];
    for (const waiter of this.waiters) {
      if (waiter.n <= this.contiguous) waiter.resolve();
      else if (ended) waiter.reject(new Error(`${this.name} ended at ${this.contiguous}, short of ${waiter.n}`));
      else keep.push(waiter);
    }
    this.waiters = keep;
  }
}

/**
 * Feeds a reader's entries into its checker until the close or an error (recorded, not
 * thrown, so one failing reader does not hide the others' counts). `each` runs per entry
 * (a slow consumer awaits in it).
 */
export async function follow(
  checker: SequenceChecker,
  entries: AsyncIterable<{ offset: number; value: unknown }>,
  each?: (offset: number) => Promise<void> | void,
): Promise<void> {
  try {
    for await (const entry of entries) {
      checker.entry(entry.offset, entry.value);
      if (each) await each(entry.offset);
    }
    checker.close();
  } catch (error) {
    checker.fail(error);
  }
}

/** Sums counts over readers (and over processes: counts are plain data). */
export function tally(parts: Iterable<SequenceCounts>): SequenceCounts {
  const sum: SequenceCounts = { ...NO_COUNTS, problems: [] };
  for (const c of parts) {
    sum.readers += c.readers;
    sum.read += c.read;
    sum.lost += c.lost;
    sum.duplicated += c.duplicated;
    sum.reordered += c.reordered;
    sum.wrong += c.wrong;
    sum.unclosed += c.unclosed;
    sum.failed += c.failed;
    if (sum.problems.length < 10) sum.problems.push(...c.problems.slice(0, 10 - sum.problems.length));
  }
  return sum;
}

/** True when every reader saw its whole range exactly once, in order, then the close. */
export function exact(c: SequenceCounts): boolean {
  return c.lost === 0 && c.duplicated === 0 && c.reordered === 0 && c.wrong === 0 && c.unclosed === 0 && c.failed === 0;
}
