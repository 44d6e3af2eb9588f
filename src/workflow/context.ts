// What workflow code sees: steps, and writes to its streams.
//
// Exactly-once writes: each write gets its offset from a per-key counter held here, in
// the order workflow code calls writeStream. Workflow code is deterministic, so a
// recovered run replays the same writes at the same offsets, and the insert's ON
// CONFLICT DO NOTHING stores nothing twice.
//
// Writes from inside a step are at-least-once: a step interrupted by a crash runs again,
// and its writes land after whatever the first attempt wrote. To make that so, a
// recovered run re-reads the stream heads where a step's writes could have diverged
// (first in-step write to a key, and after each step it executes), and every finished
// step records the counters, which a replay of it restores.
import { AsyncLocalStorage } from "node:async_hooks";
import type { Sql } from "../db/connect.js";
import { InvalidArgumentError, StreamClosedError, WorkflowCancelledError, WorkflowFinishedError } from "../errors.js";
import { encodeJson } from "../json.js";
import type { StreamWriter } from "../streams/writer.js";
import { assertName, describe } from "../validate.js";
import type { ErrorCodec, StoredError } from "./errorCodec.js";
import { NonDeterminismError } from "../errors.js";
import { getWorkflow, loadSteps, nextOffsets, saveStep, type StepRow } from "./store.js";

/** A progress entry, as `writeProgress` writes it and the CLI and the web page read it. */
export interface Progress {
  /** Units done so far: 0 ≤ done ≤ total. */
  done: number;
  /** Units in all. */
  total: number;
  /** What is being done, e.g. "download". */
  label?: string;
}

export interface StepOptions {
  /** Extra attempts after the first one throws. @default 0 */
  retries?: number;
  /** Wait before the first retry; doubles each time. @default 100 */
  retryDelayMs?: number;
}

/** The handle a workflow function receives. */
export interface WorkflowContext {
  readonly workflowId: string;
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
}

const stepScope = new AsyncLocalStorage<RunContext>();

export class RunContext implements WorkflowContext {
  private stepCount = 0;
  private offsets = new Map<string, number>();
  private closedKeys = new Set<string>();
  private syncedKeys = new Set<string>();
  private inflight = new Set<Promise<unknown>>();
  /** Set once the context may no longer act: finished, cancelled, engine closed, write lost. */
  private endedBy: Error | undefined;

  constructor(
    private readonly deps: ContextDeps,
    readonly workflowId: string,
    private readonly recorded: Map<number, StepRow>,
    private readonly recovered: boolean,
  ) {}

  get endReason(): Error | undefined {
    return this.endedBy;
  }

  end(reason: Error): void {
    this.endedBy ??= reason;
  }

  /** Waits for every write this context started. */
  async settle(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }

  async step<T>(name: string, fn: () => Promise<T> | T, options: StepOptions = {}): Promise<T> {
    assertName("step name", name);
    if (typeof fn !== "function") throw new InvalidArgumentError(`step "${name}" needs a function`);
    const retries = options.retries === undefined ? 0 : options.retries;
    if (typeof retries !== "number" || !Number.isInteger(retries) || retries < 0) {
      throw new InvalidArgumentError(`step "${name}": retries must be a non-negative integer, got ${describe(retries)}`);
    }
    const retryDelayMs = options.retryDelayMs === undefined ? 100 : options.retryDelayMs;
    if (typeof retryDelayMs !== "number" || !Number.isFinite(retryDelayMs) || retryDelayMs < 0) {
      throw new InvalidArgumentError(`step "${name}": retryDelayMs must be a non-negative number, got ${describe(retryDelayMs)}`);
    }
    this.assertActive();
    // A step inside a step is part of the outer one: at-least-once, not recorded.
    if (stepScope.getStore() === this) return fn();

    const stepId = this.stepCount++;
    const recorded = this.recorded.get(stepId);
    if (recorded) return this.replay<T>(stepId, name, recorded);

    let output: T | undefined;
    let failure: unknown;
    let failed = false;
    for (let attempt = 0, delay = retryDelayMs; ; attempt++, delay *= 2) {
      try {
        output = await stepScope.run(this, fn);
        failed = false;
        break;
      } catch (error) {
        failed = true;
        failure = error;
        if (attempt >= retries || this.endedBy) break;
        await new Promise((resolve) => setTimeout(resolve, delay));
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
    if (this.recovered) await this.syncAll();
    const stored: StoredError | null = failed ? this.deps.codec.encode(failure) : null;
    const saved = await saveStep(
      this.deps.sql, this.workflowId, stepId, name, outputJson, stored, this.snapshot(),
    );
    // Not stored: the workflow left PENDING, or another run of it (a killed worker whose
    // session committed late) recorded this step first, and that record is the one to keep.
    if (!saved) return this.recordedElsewhere<T>(stepId, name);
    if (failed) throw failure;
    return output as T;
  }

  writeStream<T>(key: string, value: T): Promise<void> {
    try {
      assertName("stream key", key);
      this.assertActive();
      if (this.closedKeys.has(key)) throw new StreamClosedError(this.workflowId, key);
      const json = encodeJson(value, `value written to stream "${key}"`, this.deps.maxValueBytes);
      return this.append(key, json, false);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  writeProgress(key: string, progress: Progress): Promise<void> {
    try {
      return this.writeStream<Progress>(key, checkProgress(progress));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  closeStream(key: string): Promise<void> {
    try {
      assertName("stream key", key);
      this.assertActive();
      if (this.closedKeys.has(key)) return Promise.resolve();
      this.closedKeys.add(key);
      return this.append(key, null, true);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private append(key: string, json: string | null, closed: boolean): Promise<void> {
    const inStep = stepScope.getStore() === this;
    const write =
      inStep && this.recovered && !this.syncedKeys.has(key)
        ? this.syncKey(key).then(() => this.send(key, json, closed))
        : this.send(key, json, closed);
    this.inflight.add(write);
    return write.finally(() => this.inflight.delete(write));
  }

  private send(key: string, json: string | null, closed: boolean): Promise<void> {
    this.assertActive();
    const offset = this.offsets.get(key) ?? 0;
    this.offsets.set(key, offset + 1);
    return this.deps.writer.append({ workflowId: this.workflowId, key, offset, json, closed }).catch((error) => {
      // A lost write would leave a gap before every later offset: stop here.
      this.end(error as Error);
      throw error;
    });
  }

  private replay<T>(stepId: number, name: string, recorded: StepRow): T {
    if (recorded.name !== name) {
      throw new NonDeterminismError(
        `workflow "${this.workflowId}" step #${stepId} was recorded as "${recorded.name}" but is now "${name}": workflow code must call its steps in the same order`,
      );
    }
    for (const [key, next] of Object.entries(recorded.streamOffsets ?? {})) this.advance(key, next);
    if (recorded.error) throw this.deps.codec.decode(recorded.error);
    return recorded.output as T;
  }

  private async syncKey(key: string): Promise<void> {
    if (this.syncedKeys.has(key)) return;
    const [row] = await this.deps.sql`
      select max("offset") as m from stream_entries where workflow_id = ${this.workflowId} and key = ${key}`;
    if (row?.m !== null && row?.m !== undefined) this.advance(key, (row.m as number) + 1);
    this.syncedKeys.add(key);
  }

  private async syncAll(): Promise<void> {
    for (const [key, next] of await nextOffsets(this.deps.sql, this.workflowId)) this.advance(key, next);
  }

  private advance(key: string, next: number): void {
    if ((this.offsets.get(key) ?? 0) < next) this.offsets.set(key, next);
  }

  private snapshot(): Record<string, number> | null {
    return this.offsets.size === 0 ? null : Object.fromEntries(this.offsets);
  }

  private assertActive(): void {
    if (this.endedBy) throw this.endedBy;
  }

  private async recordedElsewhere<T>(stepId: number, name: string): Promise<T> {
    const { status } = await getWorkflow(this.deps.sql, this.workflowId);
    const recorded = status === "PENDING" ? (await loadSteps(this.deps.sql, this.workflowId, stepId)).get(stepId) : undefined;
    if (recorded) return this.replay<T>(stepId, name, recorded);
    this.end(status === "CANCELLED" ? new WorkflowCancelledError(this.workflowId) : new WorkflowFinishedError(this.workflowId, status));
    throw this.endedBy;
  }
}

/** A copy of `progress` with only its known fields, or InvalidArgumentError naming the problem. */
function checkProgress(progress: Progress): Progress {
  if (typeof progress !== "object" || progress === null) {
    throw new InvalidArgumentError(`progress must be an object { done, total, label? }, got ${describe(progress)}`);
  }
  const { done, total, label } = progress;
  for (const [name, value] of [["done", done], ["total", total]] as const) {
    if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
      throw new InvalidArgumentError(`progress.${name} must be a finite non-negative number, got ${describe(value)}`);
    }
  }
  if (done > total) throw new InvalidArgumentError(`progress.done (${done}) must not exceed progress.total (${total})`);
  if (label !== undefined && typeof label !== "string") {
    throw new InvalidArgumentError(`progress.label must be a string, got ${describe(label)}`);
  }
  return label === undefined ? { done, total } : { done, total, label };
}
