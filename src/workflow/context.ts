// What workflow code sees: steps, and writes to its streams.
//
// Exactly-once writes from workflow code. Each write (and close) that workflow code
// makes to a stream gets a sequence number, 0, 1, 2, … in the order the code makes them,
// which is stored with the entry (write_seq). Workflow code is deterministic, so a
// recovered run makes the same writes in the same order: the ones whose number is
// already stored are skipped, and the rest are appended after whatever the stream holds.
// Offsets themselves are assigned at append time from the stream's head, so they stay
// gap-free whatever ran concurrently (a step started before a write and awaited after
// it, Promise.all of steps and writes): only the writes' order decides what is a replay.
//
// Writes from inside a step are at-least-once: they carry no number, a step interrupted
// by a crash runs again, and its writes land after whatever the first attempt wrote.
import { AsyncLocalStorage } from "node:async_hooks";
import type { Sql } from "../db/connect.js";
import { retrying } from "../db/retry.js";
import {
  InvalidArgumentError, NonDeterminismError, StreamClosedError, WorkflowCancelledError, WorkflowFinishedError,
} from "../errors.js";
import { encodeJson } from "../json.js";
import type { AppendOwner, StreamWriter } from "../streams/writer.js";
import { MAX_TIMER_MS, sleep } from "../sleep.js";
import { assertName, describe } from "../validate.js";
import type { ErrorCodec } from "./errorCodec.js";
import { checkProgress, type Progress } from "./progress.js";

export type { Progress } from "./progress.js";
import { getWorkflow, loadSteps, saveStep, statusOf, type StepRow, type StreamState } from "./store.js";

export interface StepOptions {
  /** Extra attempts after the first one throws. @default 0 */
  retries?: number;
  /** Wait before the first retry; doubles each time (at most 2^31 − 1 ms). @default 100 */
  retryDelayMs?: number;
}

/** The handle a workflow function receives. */
export interface WorkflowContext {
  readonly workflowId: string;
  /**
   * Aborted when this run ends early: the workflow was cancelled, the engine is closing,
   * or Postgres stayed unreachable. Pass it to long calls (fetch, a model) in steps.
   */
  readonly signal: AbortSignal;
  /** Runs `fn` once: its result (or error) is stored, and a recovered run replays it. */
  step<T>(name: string, fn: () => Promise<T> | T, options?: StepOptions): Promise<T>;
  /** Appends a value to the stream `key`; resolves once it is durable. */
  writeStream<T>(key: string, value: T): Promise<void>;
  /** Closes the stream `key`; later writes to it reject with StreamClosedError. */
  closeStream(key: string): Promise<void>;
  /** Appends a checked `{ done, total, label? }` to the stream `key` (a typed writeStream). */
  writeProgress(key: string, progress: Progress): Promise<void>;
}

export interface ContextDeps {
  sql: Sql;
  writer: StreamWriter;
  codec: ErrorCodec;
  maxValueBytes: number;
  retryTimeoutMs: number;
}

/** What a recovered run starts from: the recorded steps and the state of each stream. */
export interface Recovery {
  steps: Map<number, StepRow>;
  streams: Map<string, StreamState>;
}

const stepScope = new AsyncLocalStorage<RunContext>();

export class RunContext implements WorkflowContext, AppendOwner {
  private stepCount = 0;
  /** The offset each stream's next append takes. */
  private readonly nextOffset = new Map<string, number>();
  /** Writes and closes made by workflow code so far, per stream. */
  private readonly codeWrites = new Map<string, number>();
  /** Recovered: how many of those each stream already holds. */
  private readonly storedWrites = new Map<string, number>();
  /** Streams this run closed (from workflow code or a step). */
  private readonly closedHere = new Set<string>();
  /** Recovered: streams already closed in the table (by a step that will not run again). */
  private readonly closedStored = new Set<string>();
  private readonly recorded: Map<number, StepRow>;
  private readonly inflight = new Set<Promise<unknown>>();

  /** `controller` is the run's: aborting it (a cancel, the engine closing) ends the run. */
  constructor(
    private readonly deps: ContextDeps,
    readonly workflowId: string,
    recovery: Recovery | undefined,
    private readonly controller: AbortController,
  ) {
    this.recorded = recovery?.steps ?? new Map();
    for (const [key, stream] of recovery?.streams ?? []) {
      this.nextOffset.set(key, stream.nextOffset);
      this.storedWrites.set(key, stream.storedWrites);
      if (stream.closed) this.closedStored.add(key);
    }
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Why the run may no longer act (finished, cancelled, engine closed, write lost), if it may not. */
  get endReason(): unknown {
    return this.controller.signal.aborted ? this.controller.signal.reason : undefined;
  }

  end(reason: Error): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }

  /** The writer lost one of our appends: nothing after it may be written. */
  lost(error: unknown): void {
    this.end(error as Error);
  }

  /** Waits for every write this context started. */
  async settle(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }

  // Every promise handed to workflow code is marked handled: when a run is abandoned
  // (cancelled, engine closed) while the code holds a step or write it has not awaited
  // yet (`const p = ctx.step(…)` … `await p`), its rejection must not become an unhandled
  // rejection that takes the process down. Code that awaits still gets it.
  step<T>(name: string, fn: () => Promise<T> | T, options: StepOptions = {}): Promise<T> {
    return handled(this.runStep(name, fn, options));
  }

  writeStream<T>(key: string, value: T): Promise<void> {
    return handled(this.write(key, value));
  }

  writeProgress(key: string, progress: Progress): Promise<void> {
    try {
      return this.writeStream<Progress>(key, checkProgress(progress));
    } catch (error) {
      return handled(Promise.reject(error));
    }
  }

  closeStream(key: string): Promise<void> {
    return handled(this.close(key));
  }

  private async runStep<T>(name: string, fn: () => Promise<T> | T, options: StepOptions): Promise<T> {
    assertName("step name", name);
    if (typeof fn !== "function") throw new InvalidArgumentError(`step "${name}" needs a function`);
    if (typeof options !== "object" || options === null) {
      throw new InvalidArgumentError(`step "${name}": options must be an object, got ${describe(options)}`);
    }
    const retries = options.retries === undefined ? 0 : options.retries;
    if (typeof retries !== "number" || !Number.isSafeInteger(retries) || retries < 0) {
      throw new InvalidArgumentError(`step "${name}": retries must be a non-negative integer, got ${describe(retries)}`);
    }
    const retryDelayMs = options.retryDelayMs === undefined ? 100 : options.retryDelayMs;
    if (typeof retryDelayMs !== "number" || !Number.isFinite(retryDelayMs) || retryDelayMs < 0 || retryDelayMs > MAX_TIMER_MS) {
      throw new InvalidArgumentError(
        `step "${name}": retryDelayMs must be a number from 0 to ${MAX_TIMER_MS}, got ${describe(retryDelayMs)}`,
      );
    }
    this.assertActive();
    // A step inside a step is part of the outer one: at-least-once, not recorded.
    if (stepScope.getStore() === this) return fn();

    const stepId = this.stepCount++;
    const recorded = this.recorded.get(stepId);
    if (recorded) return this.replay<T>(stepId, name, recorded);

    // A run that another process cancelled (or finished) starts no new step, even before
    // it hears the notification.
    await this.ensurePending();
    let output: T | undefined;
    let failure: unknown;
    let failed = false;
    for (let attempt = 0; ; attempt++) {
      this.assertActive(); // no attempt starts once the run has ended
      try {
        output = await stepScope.run(this, fn);
        failed = false;
        break;
      } catch (error) {
        failed = true;
        failure = error;
        if (attempt >= retries) break;
        await sleep(retryDelayMs * 2 ** Math.min(attempt, 31), this.signal);
      }
    }
    this.assertActive();

    let outputJson: string | null = null;
    if (!failed && output !== undefined) {
      try {
        outputJson = encodeJson(output, `output of step "${name}"`, this.deps.maxValueBytes);
      } catch (error) {
        failed = true;
        failure = error;
      }
    }
    const encoded = failed ? this.deps.codec.encode(failure, `step "${name}"`) : undefined;
    const saved = await this.db("save step", () =>
      saveStep(this.deps.sql, this.workflowId, stepId, name, outputJson, encoded?.json ?? null),
    );
    // Not stored: the workflow left PENDING, or another run of it (a killed worker whose
    // session committed late) recorded this step first, and that record is the one to keep.
    if (!saved) return this.recordedElsewhere<T>(stepId, name);
    if (encoded) throw encoded.thrown;
    return output as T;
  }

  private write(key: string, value: unknown): Promise<void> {
    try {
      assertName("stream key", key);
      this.assertActive();
      const fromCode = stepScope.getStore() !== this;
      if (this.closedHere.has(key) || (!fromCode && this.closedStored.has(key))) {
        throw new StreamClosedError(this.workflowId, key);
      }
      const json = encodeJson(value, `value written to stream "${key}"`, this.deps.maxValueBytes);
      if (!fromCode) return this.append(key, json, false, null);
      const seq = this.codeWrites.get(key) ?? 0;
      if (seq < (this.storedWrites.get(key) ?? 0)) {
        this.codeWrites.set(key, seq + 1);
        return Promise.resolve(); // stored by an earlier run
      }
      // Closed by a step of an earlier run that this run replays (the first run threw here too).
      if (this.closedStored.has(key)) throw new StreamClosedError(this.workflowId, key);
      this.codeWrites.set(key, seq + 1);
      return this.append(key, json, false, seq);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private close(key: string): Promise<void> {
    try {
      assertName("stream key", key);
      this.assertActive();
      const fromCode = stepScope.getStore() !== this;
      if (this.closedHere.has(key)) return Promise.resolve();
      if (!fromCode) {
        if (this.closedStored.has(key)) return Promise.resolve();
        this.closedHere.add(key);
        return this.append(key, null, true, null);
      }
      this.closedHere.add(key);
      const seq = this.codeWrites.get(key) ?? 0;
      if (seq < (this.storedWrites.get(key) ?? 0)) {
        this.codeWrites.set(key, seq + 1);
        return Promise.resolve(); // closed by an earlier run
      }
      if (this.closedStored.has(key)) return Promise.resolve();
      this.codeWrites.set(key, seq + 1);
      return this.append(key, null, true, seq);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private append(key: string, json: string | null, closed: boolean, writeSeq: number | null): Promise<void> {
    const offset = this.nextOffset.get(key) ?? 0;
    this.nextOffset.set(key, offset + 1);
    const write = this.deps.writer
      .append({ workflowId: this.workflowId, key, offset, json, closed, writeSeq, owner: this })
      .catch((error) => {
        // A lost or refused write would leave a gap before every later offset: stop here.
        this.end(error as Error);
        throw error;
      });
    this.inflight.add(write);
    return write.finally(() => this.inflight.delete(write));
  }

  private replay<T>(stepId: number, name: string, recorded: StepRow): T {
    if (recorded.name !== name) {
      throw new NonDeterminismError(
        `workflow "${this.workflowId}" step #${stepId} was recorded as "${recorded.name}" but is now "${name}": workflow code must call its steps in the same order`,
      );
    }
    if (recorded.error) throw this.deps.codec.decode(recorded.error);
    return recorded.output as T;
  }

  private async ensurePending(): Promise<void> {
    const status = await this.db("check workflow status", () => statusOf(this.deps.sql, this.workflowId));
    if (status !== "PENDING") this.endBecause(status);
    this.assertActive();
  }

  /** A database call of this run: retried through an outage; past it, the run ends. */
  private async db<T>(what: string, call: () => Promise<T>): Promise<T> {
    try {
      return await retrying(what, this.deps.retryTimeoutMs, call, this.signal);
    } catch (error) {
      this.end(error as Error);
      throw error;
    }
  }

  private assertActive(): void {
    if (this.controller.signal.aborted) throw this.controller.signal.reason;
  }

  private endBecause(status: string): void {
    this.end(status === "CANCELLED" ? new WorkflowCancelledError(this.workflowId) : new WorkflowFinishedError(this.workflowId, status));
  }

  private async recordedElsewhere<T>(stepId: number, name: string): Promise<T> {
    const { status } = await this.db("load workflow", () => getWorkflow(this.deps.sql, this.workflowId));
    const recorded = status === "PENDING"
      ? (await this.db("load step", () => loadSteps(this.deps.sql, this.workflowId, stepId))).get(stepId)
      : undefined;
    if (recorded) return this.replay<T>(stepId, name, recorded);
    this.endBecause(status);
    throw this.endReason;
  }
}

function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}
