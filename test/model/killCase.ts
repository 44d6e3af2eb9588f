// One kill case: the program runs in a worker process that is SIGKILLed at points of its
// progress (paused there, or running on past it), and each time a new process recovers
// the workflow with launch(). The test process holds a parent engine in the same schema
// (another executorId) for readers, getResult and an optional cancel from outside.
// Recovery always happens after the killed process is gone.
import { randomBytes } from "node:crypto";
import { check, type CaseFacts, type Settled, type StoredRow } from "./check.js";
import { WorkerPool, type WorkerProcess } from "./children.js";
import { after, count, isOutageError, ModelEnv, settle, sinkProblems, type OpenedEngine, type Sink, type Stats } from "./env.js";
import { readerStart } from "./engineCase.js";
import { readerKey, resolvePoint, type Fault, type PointKey, type Schedule } from "./faults.js";
import { Journal } from "./journal.js";
import { buildModel } from "./model.js";
import { plain, type Program } from "./program.js";
import { abortReader, startReader, type ReaderRun } from "./readers.js";
import type { FromWorker } from "./worker.js";

const RETRY_TIMEOUT_MS = 5000;
/** How long a worker may take to reach a point, or a workflow to end, before it counts as hung. */
const STEP_MS = 20_000;

export class KillWorld {
  private cases = 0;

  private constructor(
    readonly env: ModelEnv,
    readonly schema: string,
    readonly parent: OpenedEngine,
    readonly pool: WorkerPool,
  ) {}

  static async open(url: string, stats: Stats): Promise<KillWorld> {
    const env = ModelEnv.create(url, stats);
    const schema = env.schema("k");
    const parent = await env.open(schema, "parent", "P", undefined, { retryTimeoutMs: RETRY_TIMEOUT_MS });
    await env.admin.unsafe(`create table "${schema}".model_journal (
      workflow_id text not null, token text not null, op int not null, attempt int not null, run text not null, pid int not null,
      at timestamptz not null default clock_timestamp())`);
    const pool = new WorkerPool({ url, schema, retryTimeoutMs: RETRY_TIMEOUT_MS });
    pool.warm();
    return new KillWorld(env, schema, parent, pool);
  }

  async run(c: { program: Program; schedule: Schedule }): Promise<string[]> {
    const k = new KillCase(this, ++this.cases, c.program, c.schedule);
    let violations: string[];
    try {
      violations = await k.run();
    } catch (error) {
      violations = [`the harness itself failed: ${String((error as Error)?.stack ?? error)}`];
    } finally {
      await k.cleanup();
    }
    return [...violations, ...k.lateProblems()];
  }

  async close(): Promise<string[]> {
    await this.pool.close();
    await this.parent.engine.close();
    const problems = await this.env.close();
    return problems;
  }
}

class KillCase {
  readonly workflowId: string;
  readonly journal = new Journal();
  readonly notes: string[] = [];
  private readonly sink: Sink = { engineErrors: [], unhandled: [] };
  private readonly readers: (ReaderRun | undefined)[];
  private readonly model;
  private current: WorkerProcess | undefined;
  private workers = 0;
  private interrupted = false;
  private cancelled = false;
  private readonly fired = new Set<string>();
  private readonly pending: Promise<unknown>[] = [];
  private readonly unsubscribe: (() => void)[] = [];
  private readonly abortEarly = new Set<number>();

  constructor(private readonly world: KillWorld, private readonly n: number, readonly program: Program, readonly schedule: Schedule) {
    this.workflowId = `k${n}-${randomBytes(3).toString("hex")}`;
    this.model = buildModel(program);
    this.readers = schedule.readers.map(() => undefined);
  }

  private get stats(): Stats {
    return this.world.env.stats;
  }

  /** A worker for this case with an engine of the case's executorId. */
  private async worker(): Promise<WorkerProcess> {
    const w = await this.world.pool.take();
    const label = `K${this.n}w${++this.workers}`;
    this.unsubscribe.push(w.on((m) => this.onMessage(m)));
    await w.request({ type: "open", executorId: `x-${this.workflowId}`, label }, "opened");
    this.current = w;
    return w;
  }

  private onMessage(m: FromWorker): void {
    switch (m.type) {
      case "outcome":
        this.journal.add({ kind: "outcome", run: m.run, key: m.key, outcome: m.outcome }, -1);
        return;
      case "run":
        this.journal.add(m.event === "start" ? { kind: "run-start", run: m.run } : { kind: "run-end", run: m.run, outcome: m.outcome }, -1);
        return;
      case "unhandled":
        this.sink.unhandled.push(`(in worker) ${m.text}`);
        return;
      case "engine-error":
        if (!isOutageError({ code: m.code })) this.notes.push(`a worker's engine reported a background failure: ${m.text}`);
        return;
      case "at":
        this.at(m.point);
        return;
      default:
    }
  }

  /** A point reached in a worker: readers start or abort, the cancel fires (never held: it is another process). */
  private at(point: PointKey): void {
    const parent = this.world.parent;
    this.schedule.readers.forEach((r, i) => {
      if (typeof r.start === "object" && resolvePoint(this.program, r.start) === point) this.startReader(i, point);
      if (r.abort && "where" in r.abort && resolvePoint(this.program, r.abort) === point) {
        const reader = this.readers[i];
        if (reader) abortReader(reader);
        else this.abortEarly.add(i);
      }
    });
    const cancel = this.schedule.faults.find((f): f is Extract<Fault, { kind: "cancel" }> => f.kind === "cancel");
    if (cancel && !this.fired.has("cancel") && resolvePoint(this.program, cancel.at) === point) {
      this.fired.add("cancel");
      this.pending.push(parent.engine.cancelWorkflow(this.workflowId).then(
        () => {
          this.cancelled = true;
          this.interrupted = true;
          this.journal.add({ kind: "cancel-resolved" }, -1);
          count(this.stats, "cancel from another process");
        },
        (error: unknown) => this.notes.push(`cancelWorkflow rejected: ${String((error as Error)?.message ?? error)}`),
      ));
    }
  }

  private startReader(i: number, point: PointKey | undefined): void {
    if (this.readers[i]) return;
    const spec = this.schedule.readers[i]!;
    const key = readerKey(this.program, spec);
    const { from } = readerStart(this.model, this.program, spec, key, undefined);
    void point;
    const reader = startReader(this.world.parent.engine, "P", this.workflowId, key, from, spec);
    this.readers[i] = reader;
    if (this.abortEarly.has(i)) abortReader(reader);
    count(this.stats, "readers");
  }

  async run(): Promise<string[]> {
    this.world.env.sink = this.sink;
    this.stats.cases++;
    const kills = this.schedule.faults.filter((f): f is Extract<Fault, { kind: "kill" }> => f.kind === "kill");
    const killAt = kills.map((k) => resolvePoint(this.program, k.at));
    const pauseFor = (i: number) => (kills[i]?.pause ? killAt[i] : undefined);

    let w = await this.worker();
    let since = w.messages.length;
    const parent = this.world.parent.engine;
    const startPause = pauseFor(0);
    await w.request({ type: "start", workflowId: this.workflowId, program: plain(this.program), ...(startPause ? { pause: startPause } : {}) }, "started");
    const early = settle(parent.retrieveWorkflow(this.workflowId).getResult());
    for (const [i, r] of this.schedule.readers.entries()) if (r.start === "before") this.startReader(i, undefined);

    for (const [i, kill] of kills.entries()) {
      const point = killAt[i]!;
      const reached = w.next(`point ${point}`, (m) => (kill.pause ? m.type === "paused" : m.type === "at") && "point" in m && m.point === point, STEP_MS, since)
        .then(() => "reached" as const, () => "missed" as const);
      const r = await Promise.race([reached, early.then(() => "ended" as const)]);
      if (r !== "reached") break; // the workflow ended (or hung) before the point: no kill
      await w.kill();
      this.interrupted = true;
      count(this.stats, kill.pause ? "worker SIGKILL (paused at the point)" : "worker SIGKILL (running on past the point)");
      w = await this.worker();
      since = w.messages.length;
      const nextPause = pauseFor(i + 1);
      await w.request({ type: "launch", workflowId: this.workflowId, ...(nextPause ? { pause: nextPause } : {}) }, "launched");
      count(this.stats, "recovery by launch() in a new process");
    }

    const end = await Promise.race([settle(parent.retrieveWorkflow(this.workflowId).getResult()), after(STEP_MS)]);
    const final: Settled | "hung" = end === "timeout" ? "hung" : end;
    if (final === "hung") this.notes.push(`the workflow did not end within ${STEP_MS / 1000} s of its last recovery`);

    await Promise.race([Promise.allSettled(this.pending), after(10_000)]);
    for (const i of this.schedule.readers.keys()) if (!this.readers[i]) this.startReader(i, undefined);
    for (const [i, r] of this.readers.entries()) {
      if (!r) continue;
      if ((await Promise.race([r.done.then(() => "done" as const), after(10_000)])) === "timeout") {
        this.notes.push(`reader ${i} (${r.spec.api} of ${JSON.stringify(r.key)} from ${r.from}) did not end within 10 s of the workflow's end`);
        abortReader(r);
        await Promise.race([r.done, after(5000)]);
      }
    }
    if (parent.readerCount !== 0) this.notes.push(`the parent engine still counts ${parent.readerCount} readers after every reader ended`);
    const earlyResult = await Promise.race([early, after(5000)]).then((r) => (r === "timeout" ? ("hung" as const) : r));

    const admin = this.world.env.admin;
    const schema = this.world.schema;
    const [row] = await admin.unsafe(`select status from "${schema}".workflow_status where workflow_id = $1`, [this.workflowId]);
    const rows = await admin.unsafe(
      `select key, "offset"::float8 as "offset", value, closed from "${schema}".stream_entries where workflow_id = $1 order by key, "offset"`,
      [this.workflowId],
    );
    const steps = await admin.unsafe(`select step_id, name from "${schema}".step_outputs where workflow_id = $1 order by step_id`, [this.workflowId]);
    const tokens = await admin.unsafe(`select token from "${schema}".model_journal where workflow_id = $1`, [this.workflowId]);
    const facts: CaseFacts = {
      program: this.program,
      model: this.model,
      workflowId: this.workflowId,
      status: row?.status as string | undefined,
      result: final,
      early: earlyResult,
      rows: rows.map((r): StoredRow => ({ key: r.key as string, offset: r.offset as number, value: r.value, closed: r.closed as boolean })),
      steps: steps.map((s) => ({ stepId: s.step_id as number, name: s.name as string })),
      journal: this.journal,
      started: new Set(tokens.map((t) => t.token as string)),
      readers: this.readers.filter((r): r is ReaderRun => r !== undefined),
      cancelled: this.cancelled,
      cancelBeforeEnd: false,
      interrupted: this.interrupted,
      sequenced: false,
      notStarted: false,
      notes: this.notes,
    };
    return check(facts);
  }

  async cleanup(): Promise<void> {
    for (const r of this.readers) if (r && !r.end) abortReader(r);
    for (const u of this.unsubscribe) u();
    const w = this.current;
    if (w?.running) {
      const closed = await w.request({ type: "close" }, "closed", 15_000).then(() => true, () => false);
      if (closed) this.world.pool.give(w);
      else await w.kill();
    }
    this.world.env.sink = undefined;
  }

  lateProblems(): string[] {
    return sinkProblems(this.sink);
  }
}
