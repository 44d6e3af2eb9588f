// Engine: opens the database (embedded by default), owns the connections, and ties the
// parts together: workflow code → writer → table → trigger → NOTIFY → notifier → feeds
// → readers.
import { randomUUID } from "node:crypto";
import { EventEmitter, setMaxListeners } from "node:events";
import { inspect } from "node:util";
import { channelOf, resolveOptions, type EngineOptions, type ResolvedOptions } from "./config.js";
import { applicationName, connect, CONNECT_TIMEOUT_MS, isConnectionError, type Sql } from "./db/connect.js";
import { asPgtideError, backoff, retrying, withdrawable } from "./db/retry.js";
import { startEmbeddedPostgres, type EmbeddedPostgres } from "./db/embedded.js";
import { migrateSchema } from "./db/migrate.js";
import { redactError, redactUrl } from "./db/redact.js";
import {
  ConnectionError, EngineClosedError, InvalidArgumentError, WorkflowCancelledError, WorkflowFinishedError,
  WorkflowConflictError, WorkflowNotFoundError, WorkflowNotRegisteredError,
} from "./errors.js";
import { encodeJson } from "./json.js";
import { untilAborted } from "./sleep.js";
import type { Entry } from "./streams/feed.js";
import { readPage } from "./streams/pageReads.js";
import { StreamFeeds } from "./streams/feeds.js";
import { Notifier } from "./streams/notifier.js";
import { readEntries } from "./streams/reader.js";
import { StreamWriter } from "./streams/writer.js";
import { assertName, assertOffset, describe } from "./validate.js";
import type { ContextDeps } from "./workflow/context.js";
import { ErrorCodec, type StoredError } from "./workflow/errorCodec.js";
import { WorkflowHandle } from "./workflow/handle.js";
import { runWorkflow, type WorkflowFunction } from "./workflow/runner.js";
import {
  finishedAmong, finishWorkflow, getWorkflow, insertWorkflow, listWorkflows, pendingWorkflows,
  type WorkflowRow, type WorkflowStatus,
} from "./workflow/store.js";
import { WorkflowWatch } from "./workflow/watch.js";

export interface StartOptions {
  /** The workflow's id; starting an id that exists returns its handle and runs nothing. @default a random UUID */
  workflowId?: string;
}

export interface Workflow<I, O> {
  readonly name: string;
  start(...args: undefined extends I ? [input?: I, options?: StartOptions] : [input: I, options?: StartOptions]): Promise<WorkflowHandle<O>>;
}

export interface ReadOptions {
  /** First offset to read; a client that has seen k values resumes with k. @default 0 */
  fromOffset?: number;
  /** Ends the wait and frees the reader. */
  signal?: AbortSignal;
}

export interface ReadStreamOptions extends ReadOptions {
  /** Wait for the close (true), or return what is stored now (false). @default true */
  wait?: boolean;
}

export type Notification =
  /** Entries up to `offset` were appended; `closed`: the last of them is the stream's close. */
  | { workflowId: string; key: string; offset: number; closed: boolean }
  | { workflowId: string; status: WorkflowStatus };

export interface EngineEvents {
  /** The listener's LISTEN is confirmed (first time). */
  listening: [];
  /** The listener reconnected; every reader has been told to re-read. */
  reconnected: [];
  notification: [notification: Notification];
  /** A background failure (a workflow whose outcome could not be stored, a listener error). */
  error: [error: unknown];
}

/** Rows read per query by a reader; also the most a reader holds in memory. */
const PAGE_SIZE = 2000;

/** What readStream and readStreamAsync yield of an entry. */
const valueOf = <T>(entry: Entry): T => entry.value as T;

export class Engine extends EventEmitter<EngineEvents> {
  readonly schema: string;
  readonly executorId: string;
  private readonly sql: Sql;
  private readonly notifier: Notifier;
  private readonly writer: StreamWriter;
  private readonly feeds: StreamFeeds;
  private readonly watch = new WorkflowWatch();
  private readonly codec: ErrorCodec;
  private readonly runner: ContextDeps;
  private readonly retryTimeoutMs: number;
  private readonly definitions = new Map<string, WorkflowFunction<unknown, unknown>>();
  /** Workflows with a run in this engine: aborting its controller ends the run. */
  private readonly runs = new Map<string, AbortController>();
  private readonly lifetime = new AbortController();
  private closing: Promise<void> | undefined;

  /** Opens an engine: starts the embedded Postgres if no URL is given, migrates, listens. */
  static async open(options: EngineOptions = {}): Promise<Engine> {
    const resolved = resolveOptions(options);
    let embedded: EmbeddedPostgres | undefined;
    let url = resolved.databaseUrl;
    if (!url) {
      embedded = await startEmbeddedPostgres({ dataDir: resolved.dataDir });
      url = embedded.url;
    }
    let engine: Engine | undefined;
    try {
      // Opening is retried through an outage like every other call; past retryTimeoutMs
      // it fails with a ConnectionError that says how to get a database. Its deadline is at
      // least the driver's connect timeout: a healthy server gets its first attempts whole,
      // however small retryTimeoutMs is.
      const bound = Math.max(resolved.retryTimeoutMs, CONNECT_TIMEOUT_MS);
      const deadline = AbortSignal.timeout(bound);
      const opening = <T>(call: () => Promise<T>) =>
        retrying("open", resolved.retryTimeoutMs, call, { signal: deadline, withdraw: "none" }).catch((error: unknown) => {
          throw unreachable(url!, deadline.aborted ? new ConnectionError(`no answer within ${bound} ms`) : error);
        });
      await opening(() => migrateSchema(url!, resolved.schema, deadline));
      engine = new Engine(resolved, url, embedded);
      // postgres.js learns array types on a pool's first connection; an array query
      // (the writer's) sent before that is malformed. So the pool's first query is this.
      await opening(() => engine!.sql`select 1`);
      await opening(() => engine!.notifier.start());
      return engine;
    } catch (error) {
      if (engine) await engine.close();
      else await embedded?.stop();
      throw error;
    }
  }

  private constructor(
    options: ResolvedOptions,
    /** The URL in use (the embedded server's when none was given). */
    readonly databaseUrl: string,
    private readonly embedded: EmbeddedPostgres | undefined,
  ) {
    super();
    this.schema = options.schema;
    this.executorId = options.executorId;
    this.retryTimeoutMs = options.retryTimeoutMs;
    // Every waiting reader without a signal of its own listens on it: no leak warning past 10.
    setMaxListeners(0, this.lifetime.signal);
    this.sql = withdrawable(connect({
      url: databaseUrl,
      schema: options.schema,
      role: "pool",
      max: options.poolSize,
      // No statement of pgtide's is silent this long unless its connection is dead.
      quietMs: Math.max(options.retryTimeoutMs, CONNECT_TIMEOUT_MS),
    }));
    this.codec = new ErrorCodec(options.errorClasses, options.maxValueBytes);
    this.writer = new StreamWriter(this.sql, options.retryTimeoutMs, (id) => this.refusal(id));
    this.feeds = new StreamFeeds(this.sql, PAGE_SIZE);
    this.runner = {
      sql: this.sql,
      writer: this.writer,
      codec: this.codec,
      maxValueBytes: options.maxValueBytes,
      retryTimeoutMs: options.retryTimeoutMs,
    };
    this.notifier = new Notifier({
      url: databaseUrl,
      schema: options.schema,
      channel: channelOf(options.schema),
      heartbeatMs: options.heartbeatMs,
      onPayload: (payload) => this.onPayload(payload),
      onListen: (reconnected) => this.onListen(reconnected),
      // Losing Postgres while reconnecting is expected (and retried): not worth a console line.
      onError: (error) => {
        const wrapped = asPgtideError("listen for notifications", error);
        if (isConnectionError(error)) this.emitError(wrapped);
        else this.report(wrapped);
      },
    });
  }

  /** Registers a workflow function under a name (the same name in every process). */
  workflow<I = undefined, O = unknown>(name: string, fn: WorkflowFunction<I, O>): Workflow<I, O> {
    assertName("workflow name", name);
    if (typeof fn !== "function") throw new InvalidArgumentError(`workflow "${name}" needs a function`);
    if (this.definitions.has(name)) throw new InvalidArgumentError(`workflow "${name}" is already registered`);
    this.definitions.set(name, fn as WorkflowFunction<unknown, unknown>);
    const start = async (input?: I, options: StartOptions = {}): Promise<WorkflowHandle<O>> => {
      this.assertOpen();
      if (typeof options !== "object" || options === null) {
        throw new InvalidArgumentError(`start options must be an object, got ${describe(options)}`);
      }
      // Only a missing id gets a fresh one: null is a bad id, not "no id".
      const workflowId = options.workflowId === undefined ? randomUUID() : options.workflowId;
      assertName("workflowId", workflowId);
      const inputJson = input === undefined ? null : encodeJson(input, `input of workflow "${name}"`, this.runner.maxValueBytes);
      // Idempotent: the id is chosen before the first attempt and the insert does nothing
      // if the id exists. An attempt whose answer was lost may have inserted the row: a
      // retry that finds it PENDING, ours and not running here takes it as its own.
      let attempts = 0;
      const result = await this.call("start workflow", () => {
        attempts++;
        return insertWorkflow(this.sql, workflowId, name, this.executorId, inputJson);
      });
      if (!result.created && result.existing.name !== name) throw new WorkflowConflictError(workflowId, result.existing.name, name);
      const ours = result.created || (attempts > 1 && result.existing.status === "PENDING" &&
        result.existing.executorId === this.executorId && !this.runs.has(workflowId));
      // The function gets the stored form of its input, as a recovered run would.
      if (ours) this.run(name, workflowId, inputJson === null ? undefined : JSON.parse(inputJson), !result.created);
      return new WorkflowHandle<O>(this, workflowId);
    };
    return { name, start: start as Workflow<I, O>["start"] };
  }

  /**
   * Resumes this executor's PENDING workflows (call after registering them). Workflows
   * whose name is not registered stay PENDING, and the call rejects naming them.
   */
  async launch(): Promise<void> {
    this.assertOpen();
    const unknown: { workflowId: string; name: string }[] = [];
    const pending = await this.call("launch", () => pendingWorkflows(this.sql, this.executorId));
    for (const row of pending) {
      if (this.runs.has(row.workflowId)) continue;
      if (!this.definitions.has(row.name)) unknown.push(row);
      else this.run(row.name, row.workflowId, row.input, true);
    }
    if (unknown.length > 0) {
      throw new WorkflowNotRegisteredError(
        [...new Set(unknown.map((u) => u.name))],
        `; these workflows stay PENDING: ${unknown.map((u) => `"${u.workflowId}"`).join(", ")}`,
      );
    }
  }

  retrieveWorkflow<O = unknown>(workflowId: string): WorkflowHandle<O> {
    assertName("workflowId", workflowId);
    return new WorkflowHandle<O>(this, workflowId);
  }

  /** Rejects with WorkflowNotFoundError if there is no such workflow. */
  async getWorkflow(workflowId: string): Promise<WorkflowRow> {
    assertName("workflowId", workflowId);
    return this.call("get workflow", () => getWorkflow(this.sql, workflowId));
  }

  async listWorkflows(filter: { status?: WorkflowStatus; name?: string; limit?: number } = {}): Promise<WorkflowRow[]> {
    if (typeof filter !== "object" || filter === null) {
      throw new InvalidArgumentError(`listWorkflows filter must be an object, got ${describe(filter)}`);
    }
    for (const name of Object.keys(filter)) {
      if (name !== "status" && name !== "name" && name !== "limit") throw new InvalidArgumentError(`unknown filter "${name}"`);
    }
    if (filter.status !== undefined && !STATUSES.includes(filter.status)) {
      throw new InvalidArgumentError(`status must be one of ${STATUSES.join(", ")}, got ${describe(filter.status)}`);
    }
    if (filter.name !== undefined) assertName("workflow name", filter.name);
    const limit = filter.limit === undefined ? 100 : filter.limit;
    assertOffset("limit", limit);
    return this.call("list workflows", () => listWorkflows(this.sql, { ...filter, limit }));
  }

  /**
   * Cancels a PENDING workflow: status CANCELLED and its open streams closed, in one
   * transaction. Its run in this engine starts no step after this resolves; a run in
   * another process stops at its next step or write. A finished workflow is left as it is.
   */
  async cancelWorkflow(workflowId: string): Promise<void> {
    assertName("workflowId", workflowId);
    await this.call("cancel workflow", () => finishWorkflow(this.sql, workflowId, "CANCELLED", null, null));
    this.runs.get(workflowId)?.abort(new WorkflowCancelledError(workflowId));
  }

  /** Waits (on NOTIFY) until the workflow leaves PENDING and returns its row. */
  async waitForWorkflow(workflowId: string, signal?: AbortSignal): Promise<WorkflowRow> {
    assertName("workflowId", workflowId);
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new InvalidArgumentError(`signal must be an AbortSignal, got ${describe(signal)}`);
    }
    this.assertOpen();
    const lifetime = this.signalFor(signal);
    const subscription = this.watch.subscribe(workflowId);
    try {
      await this.notifier.ready(lifetime);
      for (let failures = 0; ;) {
        let row: WorkflowRow;
        try {
          // Raced against the signal: a read on a silent connection may take a while to fail.
          row = await untilAborted(getWorkflow(this.sql, workflowId), lifetime);
        } catch (error) {
          if (lifetime.aborted && error === lifetime.reason) throw error;
          // A waiter waits out an outage of any length, like a reader: only its signal ends it.
          if (!isConnectionError(error)) throw asPgtideError("get workflow", error);
          await backoff(failures++, lifetime);
          await this.notifier.ready(lifetime);
          continue;
        }
        failures = 0;
        if (row.status !== "PENDING") return row;
        await subscription.changed(lifetime);
      }
    } finally {
      subscription.close();
    }
  }

  /** @internal Rebuilds a stored error (or thrown value) as it was thrown. */
  decodeError(stored: StoredError | null): unknown {
    return this.codec.decode(stored ?? { name: "Error", message: "unknown error" });
  }

  /**
   * Reads a stream. By default waits until it is closed (explicitly, or by the workflow
   * ending) and returns every value; with `wait: false` returns what is stored now.
   */
  async readStream<T = unknown>(
    workflowId: string, key: string, options: ReadStreamOptions = {},
  ): Promise<{ values: T[]; closed: boolean }> {
    const { fromOffset, signal } = this.checkRead(workflowId, key, options);
    if (options.wait !== undefined && typeof options.wait !== "boolean") {
      throw new InvalidArgumentError(`wait must be a boolean, got ${describe(options.wait)}`);
    }
    const values: T[] = [];
    if (options.wait === false) {
      for (let next = fromOffset; ;) {
        const page = await this.call("read stream", () => readPage(this.sql, workflowId, key, next, PAGE_SIZE), signal);
        if (!page.found) throw new WorkflowNotFoundError(workflowId);
        for (const entry of page.entries) values.push(entry.value as T);
        next += page.entries.length;
        if (!page.full) return { values, closed: page.closed };
      }
    }
    for await (const value of readEntries(this.feeds, this.notifier, workflowId, key, () => ({ fromOffset, signal }), valueOf<T>)) {
      values.push(value);
    }
    return { values, closed: true };
  }

  /** Yields each value as soon as it is committed; ends at the close. Bad options reject the first `next()`. */
  readStreamAsync<T = unknown>(workflowId: string, key: string, options: ReadOptions = {}): AsyncGenerator<T, void, undefined> {
    return readEntries(this.feeds, this.notifier, workflowId, key, () => this.checkRead(workflowId, key, options), valueOf<T>);
  }

  /** Like readStreamAsync, with each value's offset (for resumable clients). */
  readStreamEntries<T = unknown>(workflowId: string, key: string, options: ReadOptions = {}): AsyncGenerator<Entry<T>, void, undefined> {
    return readEntries(this.feeds, this.notifier, workflowId, key, () => this.checkRead(workflowId, key, options), (entry) => entry as Entry<T>);
  }

  /** Readers open in this engine (all streams). */
  get readerCount(): number {
    return this.feeds.readerCount;
  }

  /** The backend pid of the listener connection (undefined while reconnecting). */
  listenerPid(): Promise<number | undefined> {
    return this.notifier.backendPid();
  }

  /** `application_name` of this engine's connections, as seen in pg_stat_activity. */
  applicationName(role: "pool" | "listener"): string {
    return applicationName(this.schema, role);
  }

  /**
   * Stops the engine: running workflows stay PENDING (a later launch() resumes them) and
   * start no step after this resolves, readers end with EngineClosedError, queued writes
   * are flushed, connections closed, and the embedded Postgres (if any) stopped.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const closed = new EngineClosedError();
      this.lifetime.abort(closed);
      for (const run of this.runs.values()) run.abort(closed);
      await this.writer.drain();
      await this.notifier.close();
      await this.sql.end({ timeout: 5 });
      await this.embedded?.stop();
    })();
    return this.closing;
  }

  private run(name: string, workflowId: string, input: unknown, recovered: boolean): void {
    if (this.closing) return; // it stays PENDING for the next launch()
    const fn = this.definitions.get(name)!;
    const controller = new AbortController();
    this.runs.set(workflowId, controller);
    runWorkflow(this.runner, fn, workflowId, input, recovered, controller)
      .catch((error) => this.report(error))
      .finally(() => {
        if (this.runs.get(workflowId) === controller) this.runs.delete(workflowId);
      });
  }

  /**
   * A database call made for a caller: idempotent, so retried through an outage for
   * retryTimeoutMs (then ConnectionError); any other failure becomes a PgtideError.
   */
  private call<T>(what: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    this.assertOpen();
    return retrying(what, this.retryTimeoutMs, fn, signal ?? this.lifetime.signal);
  }

  private checkRead(workflowId: string, key: string, options: ReadOptions): { fromOffset: number; signal: AbortSignal } {
    assertName("workflowId", workflowId);
    assertName("stream key", key);
    if (typeof options !== "object" || options === null) {
      throw new InvalidArgumentError(`read options must be an object, got ${describe(options)}`);
    }
    const fromOffset = options.fromOffset === undefined ? 0 : options.fromOffset;
    assertOffset("fromOffset", fromOffset);
    if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
      throw new InvalidArgumentError(`signal must be an AbortSignal, got ${describe(options.signal)}`);
    }
    this.assertOpen();
    return { fromOffset, signal: this.signalFor(options.signal) };
  }

  /** The caller's signal, also aborted when the engine closes. */
  private signalFor(signal?: AbortSignal): AbortSignal {
    return signal ? AbortSignal.any([signal, this.lifetime.signal]) : this.lifetime.signal;
  }

  private assertOpen(): void {
    if (this.closing) throw new EngineClosedError();
  }

  /** Why the writer refused a workflow's appends. */
  private async refusal(workflowId: string): Promise<Error> {
    try {
      const row = await this.call("append to stream", () => getWorkflow(this.sql, workflowId));
      if (row.status === "CANCELLED") return new WorkflowCancelledError(workflowId);
      return new WorkflowFinishedError(workflowId, row.status);
    } catch (error) {
      return error as Error;
    }
  }

  // Runs inside postgres.js's socket parser: route the hint, never throw.
  private onPayload(payload: string): void {
    const message = JSON.parse(payload) as { w: string; k?: string; o?: number; c?: 1; s?: WorkflowStatus };
    if (message.k !== undefined && message.o !== undefined) {
      this.feeds.notify(message.w, message.k, message.o, message.c === 1);
    } else if (message.s !== undefined) {
      this.feeds.resetWorkflow(message.w);
      this.watch.notify(message.w);
      if (message.s === "CANCELLED") this.runs.get(message.w)?.abort(new WorkflowCancelledError(message.w));
    }
    if (this.listenerCount("notification") > 0) {
      this.emit("notification", message.k !== undefined
        ? { workflowId: message.w, key: message.k, offset: message.o!, closed: message.c === 1 }
        : { workflowId: message.w, status: message.s! });
    }
  }

  private onListen(reconnected: boolean): void {
    if (!reconnected) {
      this.emit("listening");
      return;
    }
    this.feeds.resetAll();
    this.watch.notifyAll();
    this.recheckRuns();
    this.emit("reconnected");
  }

  /**
   * A cancel (or a finish elsewhere) committed while the listener was away sent its
   * NOTIFY to nobody: after a reconnect, our runs' rows are asked once, and a run whose
   * workflow left PENDING ends as the notification would have ended it.
   */
  private recheckRuns(): void {
    const ids = [...this.runs.keys()];
    if (ids.length === 0 || this.closing) return;
    this.call("check running workflows", () => finishedAmong(this.sql, ids)).then((finished) => {
      for (const [id, status] of finished) {
        this.runs.get(id)?.abort(status === "CANCELLED" ? new WorkflowCancelledError(id) : new WorkflowFinishedError(id, status));
      }
    }, (error: unknown) => {
      // Not listening again yet, or closing: each run still checks before its next step.
      if (!(error instanceof EngineClosedError)) this.report(error);
    });
  }

  private report(error: unknown): void {
    if (!this.emitError(error)) console.error("pgtide:", redactError(error, this.databaseUrl));
  }

  private emitError(error: unknown): boolean {
    return this.listenerCount("error") > 0 && this.emit("error", redactError(error, this.databaseUrl));
  }

  /** console.log(engine) and util.inspect: never its URL's password (nor the driver's options). */
  [inspect.custom](): string {
    return `Engine { schema: ${JSON.stringify(this.schema)}, executorId: ${JSON.stringify(this.executorId)}, databaseUrl: ${JSON.stringify(redactUrl(this.databaseUrl))} }`;
  }
}

const STATUSES: readonly WorkflowStatus[] = ["PENDING", "SUCCESS", "ERROR", "CANCELLED"];

function unreachable(url: string, error: unknown): unknown {
  if (!(error instanceof ConnectionError)) return redactError(error, url);
  return new ConnectionError(
    `cannot reach Postgres at ${redactUrl(url)} (${error.message}). Start one (docker compose up -d), or unset DATABASE_URL to use the embedded Postgres.`,
    redactError(error.cause, url),
  );
}
