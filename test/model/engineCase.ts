// One case on engines in this process: a generated program runs on a real engine while
// its schedule's faults fire at points of its progress (listener and pool backends
// killed, cancel, engine close then recovery by a new engine's launch(), close during
// start or launch, a Postgres restart or outage) and readers start, stop and abort at
// such points. Then everything observable is gathered and judged by check().
//
// Cases without a close run on the property's shared engine, if it has one. The others
// run on engines of their own in the case schema, one at a time, each with the case's
// own executorId, so a recovering launch() resumes only this case and the connections
// of a closed engine can be counted exactly.
import { randomBytes } from "node:crypto";
import { check, type CaseFacts, type Settled, type StoredRow } from "./check.js";
import { after, count, settle, sinkProblems, type ModelEnv, type OpenedEngine, type Sink } from "./env.js";
import { printCase, resolvePoint, readerKey, topIndexOf, type Fault, type PointKey, type ReaderSpec, type Schedule } from "./faults.js";
import type { Hooks } from "./interpreter.js";
import { engineOf, Journal } from "./journal.js";
import { buildModel, type Model } from "./model.js";
import { plain, printProgram, type Program } from "./program.js";
import { abortReader, startReader, type ReaderRun } from "./readers.js";
import { describeError } from "./values.js";

/** A reader at or past an explicit close must end while the workflow is held this long. */
export const PROMPT_MS = 3000;
/** After a run's function ended, its status must leave PENDING within this. */
const SETTLE_MS = 5000;
/** Longest a case may run before it counts as hung. */
const CASE_MS = 15_000;
/** An engine call (start, launch, cancel, close…) that has not settled after this is hanging. */
const CALL_MS = 15_000;

type Item =
  | { type: "fault"; index: number; fault: Fault }
  | { type: "reader-start"; index: number }
  | { type: "reader-abort"; index: number };

/** Ballast readers (killMidResult's) live on each engine. */
const ballastReaders = new WeakMap<object, number>();

export interface PropertyEngines {
  env: ModelEnv;
  /** Where cases without an engine close run (none: every case opens its own engines). */
  shared?: OpenedEngine;
  /** The schema of the engines a case opens for itself. */
  caseSchema: string;
  /** Schema → workflow id of a finished 2,000-entry stream "b" (for mid-result kills). */
  ballast: Map<string, string>;
  engineOptions?: { retryTimeoutMs?: number };
  /** A private Postgres the case may stop and start. */
  postgres?: { stop(): Promise<void>; start(): Promise<void> };
}

export async function runEngineCase(p: PropertyEngines, program: Program, schedule: Schedule): Promise<string[]> {
  const c = new InProcessCase(p, program, schedule);
  let violations: string[] = [];
  try {
    violations = await c.run();
  } catch (error) {
    violations = [`the harness itself failed: ${String((error as Error)?.stack ?? error)}`];
  } finally {
    await c.cleanup().catch((error: unknown) => violations.push(`the harness's cleanup failed: ${String((error as Error)?.stack ?? error)}`));
  }
  return [...violations, ...c.lateProblems()];
}

/** The offset a reader starts from, and whether it must end at once (at or past an explicit close). */
export function readerStart(model: Model, program: Program, spec: ReaderSpec, key: string, startPoint: PointKey | undefined) {
  const writes = model.writes.get(key) ?? [];
  const inStep = model.inStep.filter((w) => w.key === key).length;
  const entries = writes.filter((w) => !w.close).length + inStep;
  const closeAt = writes.findIndex((w) => w.close);
  const exact = !model.inStepKeys.has(key) && closeAt >= 0 && writes.slice(0, closeAt).every((w) => !w.either);
  const closeOffset = closeAt >= 0 ? writes.slice(0, closeAt).length : entries;
  const from =
    spec.from === 0 ? 0
    : spec.from === "middle" ? Math.floor(entries / 2)
    : spec.from === "close" ? closeOffset
    : spec.from === "past-close" ? closeOffset + 2
    : Number.MAX_SAFE_INTEGER;
  // At or past an explicit close whose offset is certain: such a reader must end as soon
  // as the close is stored, whenever it started (checked at the next top-level op).
  let prompt: { closeOffset: number; closeTop: number } | undefined;
  if (exact && from >= closeOffset) prompt = { closeOffset, closeTop: topIndexOf(program, `op:${writes[closeAt]!.tag}`) };
  void startPoint;
  return { from, prompt };
}

class InProcessCase {
  readonly workflowId: string;
  readonly model: Model;
  readonly journal = new Journal();
  readonly notes: string[] = [];
  private readonly late: string[] = [];
  readonly sink: Sink = { engineErrors: [], unhandled: [] };
  private readonly env: ModelEnv;
  private readonly engines: OpenedEngine[] = [];
  private readonly items = new Map<PointKey, Item[]>();
  private readonly fired = new Set<Item>();
  private readonly pending: Promise<unknown>[] = [];
  readonly readers: (ReaderRun | undefined)[];
  private readonly abortEarly = new Set<number>();
  private readonly promptChecked = new Set<number>();
  private cancelled = false;
  private cancelBeforeEnd = false;
  private interrupted = false;
  private restarting: Promise<unknown> = Promise.resolve();
  private restartsInFlight = 0;
  private relaunch: "launch" | "close-during-launch" | undefined;
  private opened = 0;
  private readonly perCase: boolean;

  constructor(private readonly p: PropertyEngines, readonly program: Program, readonly schedule: Schedule) {
    this.env = p.env;
    this.workflowId = `m${p.env.stats.cases}-${randomBytes(3).toString("hex")}`;
    this.model = buildModel(program);
    this.readers = schedule.readers.map(() => undefined);
    this.perCase = !p.shared || schedule.faults.some((f) => f.kind === "close" || f.kind === "close-during-start");
    const add = (key: PointKey, item: Item) => {
      let list = this.items.get(key);
      if (!list) this.items.set(key, (list = []));
      list.push(item);
    };
    schedule.faults.forEach((fault, index) => {
      if (fault.kind !== "close-during-start" && "at" in fault) add(resolvePoint(program, fault.at), { type: "fault", index, fault });
    });
    schedule.readers.forEach((r, index) => {
      if (typeof r.start === "object") add(resolvePoint(program, r.start), { type: "reader-start", index });
      if (r.abort && "where" in r.abort) add(resolvePoint(program, r.abort), { type: "reader-abort", index });
    });
  }

  private hooks(): Hooks {
    return {
      op: (id, run) => this.fire(`op:${id}`, run, true),
      body: (id, attempt, token, run) => {
        this.journal.add({ kind: "step-start", run, op: id, attempt, token });
        return this.fire(`body:${id}`, run, true);
      },
      fail: (id, _attempt, run) => {
        const held = this.fire(`fail:${id}`, run, false);
        if (held) this.pending.push(this.track(held, "a fault"));
      },
      outcome: (key, outcome, run) => this.journal.add({ kind: "outcome", run, key, outcome }),
      run: (event, run, detail) => this.journal.add(event === "start" ? { kind: "run-start", run } : { kind: "run-end", run, outcome: detail }),
    };
  }

  private engineOfRun(run: string): OpenedEngine | undefined {
    const label = engineOf(run);
    return this.engines.find((e) => e.label === label);
  }

  /**
   * At a top-level op after an explicit close: every reader at or past that close, started
   * so far and still going, must end while the workflow is held here (the close is stored;
   * nothing after it can come). The deadline only turns a hang into a finding.
   */
  private promptReaders(point: PointKey, items: Item[]): Promise<unknown>[] {
    if (!point.startsWith("op:")) return [];
    // Not while Postgres is (or is about to go) down: a reader waits through an outage.
    if (this.restartsInFlight > 0 || items.some((i) => i.type === "fault" && i.fault.kind === "restart")) return [];
    const top = topIndexOf(this.program, point);
    const holds: Promise<unknown>[] = [];
    for (const [i, reader] of this.readers.entries()) {
      if (!reader?.prompt || this.promptChecked.has(i) || reader.prompt.closeTop >= top) continue;
      this.promptChecked.add(i);
      if (reader.end || reader.controller.signal.aborted) continue;
      count(this.env.stats, "reader at or past an explicit close (workflow held until it ended)");
      holds.push(Promise.race([reader.done.then(() => "ended" as const), after(PROMPT_MS)]).then((r) => {
        if (r === "timeout" && !reader.controller.signal.aborted) {
          this.notes.push(`reader ${i} (${reader.spec.api}) of ${JSON.stringify(reader.key)} from offset ${reader.from}, at or past its explicit close (offset ${reader.prompt!.closeOffset}, stored by op #${this.program.ops[reader.prompt!.closeTop]?.id}), had not ended ${PROMPT_MS} ms after the close while the workflow was held at ${point}: it waits for the workflow instead of ending at the close`);
        }
      }));
    }
    return holds;
  }

  /** Fires what is scheduled at `point` (once each); returns what the workflow must wait for. */
  private fire(point: PointKey, run: string, canHold: boolean): Promise<void> | undefined {
    const items = (this.items.get(point) ?? []).filter((i) => !this.fired.has(i));
    const holds: Promise<unknown>[] = canHold ? this.promptReaders(point, items) : [];
    if (items.length === 0) return holds.length === 0 ? undefined : Promise.all(holds).then(() => {});
    for (const item of items) {
      this.fired.add(item);
      const engine = this.engineOfRun(run);
      if (!engine) continue;
      const { promise, hold, also } = this.act(item, engine, point, canHold);
      const what = item.type === "fault" ? item.fault.kind : item.type;
      (hold ? holds : this.pending).push(this.track(promise, what));
      if (also) this.pending.push(this.track(also, what));
    }
    return holds.length === 0 ? undefined : Promise.all(holds).then(() => {});
  }

  /**
   * An engine call that must settle: past `ms` it is reported as hanging (a finding) and
   * the case goes on without it.
   */
  private async bounded<T>(ms: number, what: string, promise: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown } | undefined> {
    const r = await Promise.race([settle(promise), after(ms)]);
    if (r === "timeout") {
      this.notes.push(`${what} did not settle within ${ms / 1000} s`);
      return undefined;
    }
    return r;
  }

  /** A fault action's failure is the harness's problem, reported as such (never an unhandled rejection). */
  private track(promise: Promise<unknown>, what: string): Promise<unknown> {
    return promise.catch((error: unknown) => this.notes.push(`the harness could not inject ${what}: ${String((error as Error)?.stack ?? error)}`));
  }

  private act(item: Item, e: OpenedEngine, point: PointKey, canHold: boolean): { promise: Promise<unknown>; hold: boolean; also?: Promise<unknown> } {
    const stats = this.env.stats;
    if (item.type === "reader-start") {
      this.startReader(item.index, e, point);
      return { hold: false, promise: Promise.resolve() };
    }
    if (item.type === "reader-abort") {
      const reader = this.readers[item.index];
      if (reader) abortReader(reader);
      else this.abortEarly.add(item.index);
      return { hold: false, promise: Promise.resolve() };
    }
    const f = item.fault;
    switch (f.kind) {
      case "listener-kill":
        return {
          hold: false,
          promise: (async () => {
            const r = await this.bounded(CALL_MS, `engine ${e.label}: listenerPid()`, e.engine.listenerPid());
            const pid = r?.ok ? r.value : undefined;
            if (pid === undefined) return;
            await this.env.admin`select pg_terminate_backend(${pid})`;
            count(stats, "listener backend killed");
          })(),
        };
      case "pool-kill":
        return { hold: false, promise: f.midResult ? this.killMidResult(e) : this.killPool(e) };
      case "cancel": {
        const hold = f.hold && canHold;
        const promise = (async () => {
          const r = await this.bounded(CALL_MS, `engine ${e.label}: cancelWorkflow()`, e.engine.cancelWorkflow(this.workflowId));
          if (!r) return;
          if (!r.ok) {
            if ((r.error as { code?: string }).code !== "ENGINE_CLOSED") this.notes.push(`cancelWorkflow rejected: ${String((r.error as Error)?.message ?? r.error)}`);
            return;
          }
          this.journal.add({ kind: "cancel-resolved" });
          this.cancelled = true;
          this.interrupted = true;
          if (hold) this.cancelBeforeEnd = true;
          count(stats, hold ? "cancel (workflow held until it resolved)" : "cancel");
        })();
        return { hold, promise };
      }
      case "close": {
        const hold = f.hold && canHold;
        this.relaunch ??= f.relaunch;
        this.interrupted = true;
        return { hold, promise: this.closeEngine(e).then(() => count(stats, hold ? "engine close (workflow held until it resolved)" : "engine close mid-run")) };
      }
      case "restart": {
        const pg = this.p.postgres;
        if (!pg) return { hold: false, promise: Promise.resolve() };
        // An outage may legitimately end the run (writes give up after retryTimeoutMs).
        if (f.outage) this.interrupted = true;
        const from = this.journal.events.length;
        // One restart at a time: one that comes while another is under way is skipped.
        if (this.restartsInFlight > 0) {
          count(stats, "Postgres restart skipped (another under way)");
          return { hold: false, promise: Promise.resolve() };
        }
        this.restartsInFlight++;
        const stopped = pg.stop();
        const done = stopped.then(async () => {
          // Outage: down until the run gives up (its function ends), with a deadline.
          if (f.outage) await Promise.race([this.journal.when((ev) => ev.kind === "run-end" && ev.seq > from), after(20_000)]);
          await pg.start();
          count(stats, f.outage ? "Postgres outage until the run gave up" : "Postgres restart");
        });
        this.restarting = done.catch(() => {}).finally(() => this.restartsInFlight--);
        // The workflow goes on once Postgres is down, so its next call meets the outage.
        return { hold: canHold, promise: canHold ? stopped : done, also: canHold ? done : undefined };
      }
      default:
        return { hold: false, promise: Promise.resolve() };
    }
  }

  private closeEngine(e: OpenedEngine): Promise<void> {
    e.closing ??= this.bounded(CALL_MS, `engine ${e.label}: close()`, e.engine.close()).then((r) => {
      if (r && !r.ok) this.notes.push(`engine ${e.label}: close() rejected: ${String((r.error as Error)?.message ?? r.error)}`);
      e.closed = true;
      this.journal.add({ kind: "close-resolved", engine: e.label });
    });
    return e.closing;
  }

  private startReader(index: number, e: OpenedEngine, point: PointKey | undefined): ReaderRun | undefined {
    if (this.readers[index]) return this.readers[index];
    const spec = this.schedule.readers[index]!;
    const key = readerKey(this.program, spec);
    const { from, prompt } = readerStart(this.model, this.program, spec, key, point);
    if (e.closing) return undefined;
    const reader = startReader(e.engine, e.label, this.workflowId, key, from, spec);
    if (prompt) reader.prompt = prompt;
    this.readers[index] = reader;
    if (this.abortEarly.has(index)) abortReader(reader);
    count(this.env.stats, "readers");
    return reader;
  }

  private async killPool(e: OpenedEngine): Promise<void> {
    const rows = await this.env.admin`select pg_terminate_backend(pid) from pg_stat_activity where application_name = ${e.engine.applicationName("pool")}`;
    count(this.env.stats, rows.length > 0 ? "pool backends killed" : "pool kill (no backend open)");
  }

  /**
   * Kills the pool backend while it sends a page of the 16 MB ballast stream to a reader:
   * blocked writing rows to the client (ClientWrite), or at least running the page query.
   */
  private async killMidResult(e: OpenedEngine): Promise<void> {
    const ballast = this.p.ballast.get(e.schema);
    if (!ballast || e.closing) return this.killPool(e);
    const spec: ReaderSpec = { key: 0, from: 0, start: "before", api: "entries" };
    const reader = startReader(e.engine, e.label, ballast, "b", 0, spec);
    // The harness's own reader, not the case's: a fault fired by a run of an earlier case
    // on a shared engine may still hold one when a later case counts its readers.
    ballastReaders.set(e.engine, (ballastReaders.get(e.engine) ?? 0) + 1);
    void reader.done.finally(() => ballastReaders.set(e.engine, ballastReaders.get(e.engine)! - 1));
    const app = e.engine.applicationName("pool");
    let killed = false;
    const giveUp = Date.now() + 20_000;
    while (!reader.end && Date.now() < giveUp) {
      const rows = await this.env.admin`
        select pid from pg_stat_activity
        where application_name = ${app} and state = 'active' and (wait_event = 'ClientWrite' or query like '%stream_entries%')
        order by (wait_event = 'ClientWrite') desc`;
      if (rows.length > 0) {
        await this.env.admin`select pg_terminate_backend(${rows[0]!.pid as number})`;
        killed = true;
        break;
      }
    }
    const end = await Promise.race([reader.done.then(() => "ended" as const), after(20_000)]);
    if (end === "timeout") this.notes.push("the ballast reader (2,000 entries) did not end within 20 s after its connection was killed mid-result");
    else if (reader.end?.how === "error" && (describeError(reader.end.error) as { code?: string }).code !== "ENGINE_CLOSED") {
      this.notes.push(`the ballast reader failed after its connection was killed mid-result: ${String((reader.end.error as Error)?.message ?? reader.end.error)}`);
    } else if (reader.end?.how === "closed") {
      const bad = reader.got.findIndex((g, i) => g.offset !== i || (g.value as { i?: number })?.i !== i);
      if (bad >= 0 || reader.got.length !== 2000) this.notes.push(`the ballast reader, killed mid-result, got ${reader.got.length} entries (first wrong at ${bad}) instead of offsets 0..1999 once each`);
    }
    if (killed) count(this.env.stats, "pool backend killed mid-result");
    else await this.killPool(e);
  }

  private async open(): Promise<OpenedEngine> {
    const label = `E${++this.opened}`;
    const opened = await this.bounded(30_000, `Engine.open (${label})`, this.env.open(this.p.caseSchema, `x-${this.workflowId}`, label, undefined, this.p.engineOptions));
    if (!opened?.ok) throw new Error(`could not open engine ${label}: ${opened ? String((opened.error as Error)?.message) : "it hung"}`);
    const e = opened.value;
    this.engines.push(e);
    return e;
  }

  /** A new engine resumes the workflow (after the current one closed). */
  private async recover(): Promise<OpenedEngine> {
    for (const e of this.engines) if (e.closing) await e.closing;
    await this.restarting;
    const e = await this.open();
    if (this.relaunch === "close-during-launch") {
      this.relaunch = "launch";
      const launched = this.bounded(CALL_MS, `engine ${e.label}: launch() (closed at once)`, e.engine.launch());
      await this.closeEngine(e);
      const l = await launched;
      if (l && !l.ok && (describeError(l.error) as { code?: string }).code !== "ENGINE_CLOSED") this.notes.push(`launch() (closed at once) rejected: ${String((l.error as Error)?.message)}`);
      count(this.env.stats, "engine closed during launch()");
      return this.recover();
    }
    const l = await this.bounded(CALL_MS, `engine ${e.label}: launch()`, e.engine.launch());
    if (l && !l.ok) this.notes.push(`launch() rejected: ${String((l.error as Error)?.message ?? l.error)}`);
    count(this.env.stats, "recovery by launch() on a new engine");
    return e;
  }

  /** Waits for the workflow's end as seen by `e`: its result, its engine closing, or a hang. */
  private async waitEnd(e: OpenedEngine): Promise<{ kind: "settled"; settled: Settled } | { kind: "engine-closed" } | { kind: "hung" }> {
    const result = settle(e.engine.retrieveWorkflow(this.workflowId).getResult());
    const runEnded = this.journal
      .when((ev) => ev.kind === "run-end" && engineOf(ev.run) === e.label)
      .then(() => after(SETTLE_MS));
    const r = await Promise.race([result, runEnded, after(CASE_MS)]);
    if (r === "timeout") return { kind: "hung" };
    if (!r.ok && (describeError(r.error) as { code?: string }).code === "ENGINE_CLOSED") return { kind: "engine-closed" };
    return { kind: "settled", settled: r };
  }

  async run(): Promise<string[]> {
    this.env.sink = this.sink;
    this.env.registry.set(this.workflowId, this.hooks());
    this.env.stats.cases++;
    // Connections of engines closed in earlier cases must not come back (a late reconnect).
    if (this.perCase) await this.env.lateConnections(this.p.caseSchema);
    let e = this.perCase || !this.p.shared ? await this.open() : this.p.shared;
    if (e === this.p.shared) this.engines.push(e);

    let early: Promise<Settled> | undefined;
    let notStarted = false;
    if (this.schedule.faults.some((f) => f.kind === "close-during-start")) {
      this.interrupted = true;
      const started = this.bounded(CALL_MS, `engine ${e.label}: workflow.start() (closed at once)`, e.wf.start(plain(this.program), { workflowId: this.workflowId }));
      await this.closeEngine(e);
      const s = (await started) ?? { ok: false as const, error: new Error("start() hung") };
      count(this.env.stats, "engine closed during start()");
      const [row] = await this.env.admin.unsafe(`select status from "${this.p.caseSchema}".workflow_status where workflow_id = $1`, [this.workflowId]);
      if (!row) {
        notStarted = true;
        if (s.ok) this.notes.push("start() resolved, but no workflow row exists");
      }
    } else {
      const s = await this.bounded(CALL_MS, `engine ${e.label}: workflow.start()`, e.wf.start(plain(this.program), { workflowId: this.workflowId }));
      if (!s?.ok) throw new Error(`start() ${s ? `rejected: ${String((s.error as Error)?.stack ?? s.error)}` : "hung"}`);
      early = settle(s.value.getResult());
    }
    // "before": as soon as the workflow exists (a stream of an unknown workflow is refused).
    for (const [i, r] of this.schedule.readers.entries()) if (r.start === "before" && !notStarted) this.startReader(i, e, undefined);

    let final: Settled | "hung" | undefined;
    let abandoned = 0;
    while (!notStarted) {
      if (e.closing) {
        e = await this.recover();
        continue;
      }
      const end = await this.waitEnd(e);
      if (end.kind === "engine-closed") {
        if (!e.closing) this.notes.push(`getResult rejected with EngineClosedError on engine ${e.label}, which nobody closed`);
        await this.closeEngine(e);
        continue;
      }
      if (end.kind === "settled") {
        final = end.settled;
        break;
      }
      // Hung: the run ended (or never did) and the workflow stays PENDING on a live engine.
      const status = await this.status();
      // A run may be abandoned once per fault that can end it (and once more, reported, without one).
      if (status !== "PENDING" || abandoned > this.schedule.faults.length) {
        final = "hung";
        break;
      }
      abandoned++;
      const fnEnded = this.journal.events.some((ev) => ev.kind === "run-end" && engineOf(ev.run) === e.label);
      if (!this.interrupted) {
        this.notes.push(fnEnded
          ? `the workflow function ended on ${e.label} but the workflow stayed PENDING (no fault excuses an abandoned run); getResult kept waiting`
          : `the workflow did not finish on ${e.label} within ${CASE_MS / 1000} s`);
      }
      if (e === this.p.shared) {
        // The shared engine is alive: its own launch() resumes what it abandoned.
        const l = await this.bounded(CALL_MS, `engine ${e.label}: launch()`, e.engine.launch());
        if (l && !l.ok) this.notes.push(`launch() rejected: ${String((l.error as Error)?.message)}`);
      } else {
        await this.closeEngine(e);
      }
    }

    await this.restarting;
    // Everything in flight from the faults, then the readers that start at the end.
    // A fault that fired late (its point reached while the run wound down) joins `pending`
    // while we wait: wait until no more join, or a reader of its (the ballast's) counts.
    for (let waited = -1; waited !== this.pending.length;) {
      waited = this.pending.length;
      const settledFaults = await Promise.race([Promise.allSettled(this.pending), after(20_000)]);
      if (settledFaults === "timeout") {
        this.notes.push("a fault action did not finish within 20 s");
        break;
      }
    }
    const live = this.engines.filter((x) => !x.closing).at(-1);
    if (live) for (const i of this.schedule.readers.keys()) if (!this.readers[i]) this.startReader(i, live, undefined);
    for (const [i, r] of this.readers.entries()) {
      if (!r) continue;
      const done = await Promise.race([r.done.then(() => "done" as const), after(10_000)]);
      if (done === "timeout") {
        this.notes.push(`reader ${i} (${r.spec.api} of ${JSON.stringify(r.key)} from ${r.from}) did not end within 10 s of the workflow's end`);
        abortReader(r);
        await Promise.race([r.done, after(5000)]);
      }
    }
    const earlyResult = early ? await Promise.race([early, after(5000)]).then((r) => (r === "timeout" ? "hung" as const : r)) : undefined;
    for (const x of this.engines) {
      const readers = x.engine.readerCount - (ballastReaders.get(x.engine) ?? 0);
      if (!x.closing && readers !== 0) this.notes.push(`engine ${x.label} still counts ${readers} readers after every reader ended`);
    }

    const facts: CaseFacts = {
      program: this.program,
      model: this.model,
      workflowId: this.workflowId,
      status: notStarted ? undefined : await this.status(),
      result: final,
      early: earlyResult,
      rows: await this.rows(),
      steps: await this.steps(),
      journal: this.journal,
      started: new Set(this.journal.events.flatMap((ev) => (ev.kind === "step-start" ? [ev.token] : []))),
      readers: this.readers.filter((r): r is ReaderRun => r !== undefined),
      cancelled: this.cancelled,
      cancelBeforeEnd: this.cancelBeforeEnd,
      interrupted: this.interrupted,
      sequenced: true,
      notStarted,
      notes: this.notes,
    };
    return check(facts);
  }

  private get schema(): string {
    return this.perCase || !this.p.shared ? this.p.caseSchema : this.p.shared.schema;
  }

  private async status(): Promise<string | undefined> {
    await this.restarting;
    const [row] = await this.env.admin.unsafe(`select status from "${this.schema}".workflow_status where workflow_id = $1`, [this.workflowId]);
    return row?.status as string | undefined;
  }

  private async rows(): Promise<StoredRow[]> {
    const rows = await this.env.admin.unsafe(
      `select key, "offset"::float8 as "offset", value, closed from "${this.schema}".stream_entries where workflow_id = $1 order by key, "offset"`,
      [this.workflowId],
    );
    return rows.map((r) => ({ key: r.key as string, offset: r.offset as number, value: r.value, closed: r.closed as boolean }));
  }

  private async steps(): Promise<{ stepId: number; name: string }[]> {
    const rows = await this.env.admin.unsafe(`select step_id, name from "${this.schema}".step_outputs where workflow_id = $1 order by step_id`, [this.workflowId]);
    return rows.map((r) => ({ stepId: r.step_id as number, name: r.name as string }));
  }

  /** Closes this case's engines and checks that nothing is left behind. */
  async cleanup(): Promise<void> {
    await this.restarting;
    for (const r of this.readers) if (r && !r.end) abortReader(r);
    for (const e of this.engines) if (e !== this.p.shared) await this.closeEngine(e).catch(() => {});
    if (this.perCase) {
      const left = await this.env.noBackendsLeft(this.p.caseSchema);
      if (left) this.late.push(`connections of the case's closed engines still open 5 s after close() resolved: ${left}`);
      this.env.closedCases.push({ at: Date.now(), name: `case ${this.workflowId}`, printed: printCase(this.program, this.schedule, printProgram) });
      if (this.env.closedCases.length > 20) this.env.closedCases.shift();
      // What is left now was reported; the next case starts clean.
      if (left) await this.env.lateConnections(this.p.caseSchema, false);
    }
    this.env.registry.delete(this.workflowId);
    this.env.sink = undefined;
  }

  /** Problems only known after cleanup (connections, stray rejections, engine errors). */
  lateProblems(): string[] {
    return [...this.late, ...sinkProblems(this.sink)];
  }
}
