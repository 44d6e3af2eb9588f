// The judge: compares what a case did (table rows, getResult, readers, the journal) with
// the model, and lists every broken promise in words. Nothing here knows about faults
// beyond what they allow (a cancel allows CANCELLED and a cut-short run, a close or a
// kill allows a run that ends early and is recovered).
import type { Journal, Stamped } from "./journal.js";
import { engineOf } from "./journal.js";
import { deepEqualJson, matches, printExpect, type ExpectedWrite, type Model } from "./model.js";
import type { Program } from "./program.js";
import type { ReaderRun } from "./readers.js";
import { describeError, isAbandonOutcome, printOutcome, type Outcome } from "./values.js";

export interface StoredRow {
  key: string;
  offset: number;
  value: unknown;
  closed: boolean;
}

export type Settled = { ok: true; value: unknown } | { ok: false; error: unknown };

export interface CaseFacts {
  program: Program;
  model: Model;
  workflowId: string;
  /** The workflow's status in the table at the end (undefined: no row). */
  status: string | undefined;
  /** getResult on a live engine once the workflow ended ("hung": it did not settle). */
  result: Settled | "hung" | undefined;
  /** getResult asked right after the start, on the first engine. */
  early?: Settled | "hung";
  rows: StoredRow[];
  steps: { stepId: number; name: string }[];
  journal: Journal;
  /** Tokens of step attempts that started (from the step bodies). */
  started: Set<string>;
  readers: ReaderRun[];
  /** A cancelWorkflow resolved; `cancelBeforeEnd`: while the workflow was held, so before it ended. */
  cancelled: boolean;
  cancelBeforeEnd: boolean;
  /** A fault happened that may end a run early (close, kill, outage, cancel). */
  interrupted: boolean;
  /** Journal seqs are comparable (one process). */
  sequenced: boolean;
  /** The start was refused and no workflow row exists (close during start). */
  notStarted: boolean;
  notes: string[];
}

const printValue = (v: unknown) => {
  const text = JSON.stringify(v);
  return text === undefined ? String(v) : text.length > 160 ? `${text.slice(0, 160)}…` : text;
};

/** The tag of a stored entry written by workflow code, or undefined. */
function codeTag(value: unknown): string | undefined {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.op === "string" && "v" in v && Object.keys(v).length === 2) return v.op;
  if (typeof v.label === "string" && v.label.startsWith("op:") && "done" in v) return v.label.slice(3);
  return undefined;
}

function stepWrite(value: unknown): { op: number; j: number; t: string; v: unknown } | undefined {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.step === "number" && typeof v.j === "number" && typeof v.t === "string") return { op: v.step, j: v.j, t: v.t, v: v.v };
  return undefined;
}

export function check(f: CaseFacts): string[] {
  const out = [...f.notes];
  const { model } = f;
  if (f.notStarted) {
    if (f.rows.length > 0) out.push(`start was refused (no workflow row), yet ${f.rows.length} stream entries exist`);
    checkStepsAfterEnds(f, out);
    return out;
  }

  // ---- the final run's outcomes (SUCCESS: in the output; else the last run's journal)
  const output = f.result !== "hung" && f.result?.ok ? (f.result.value as { value: unknown; outcomes: Record<string, Outcome> } | undefined) : undefined;
  const runs = f.journal.runs();
  const outcomesOf = (run: string) => {
    const m = new Map<string, Outcome>();
    for (const e of f.journal.events) if (e.kind === "outcome" && e.run === run) m.set(e.key, e.outcome);
    return m;
  };
  const lastRun = runs.at(-1);
  const finalOutcomes = output?.outcomes ? new Map(Object.entries(output.outcomes)) : lastRun ? outcomesOf(lastRun) : new Map<string, Outcome>();

  // ---- status and result
  const expected = model.end;
  const status = f.status;
  if (status === "CANCELLED") {
    if (!f.cancelled) out.push("status is CANCELLED but no cancelWorkflow resolved");
  } else if (f.cancelBeforeEnd) {
    out.push(`cancelWorkflow resolved while the workflow was held before its end, but the status is ${status ?? "missing"}`);
  } else if (status !== expected.status) {
    out.push(`status is ${status ?? "missing"}, expected ${expected.status}${status === "PENDING" ? " (the workflow neither finished nor could be recovered)" : ""}` +
      (expected.status === "ERROR" ? ` with ${printExpect(expected.expect)}` : ""));
  }
  const result = f.result;
  if (result === "hung") {
    if (status !== "PENDING") out.push(`getResult did not settle although the workflow is ${status}`);
  } else if (result && status === "CANCELLED") {
    const d = result.ok ? undefined : describeError(result.error);
    if (!d || !("code" in d) || d.code !== "WORKFLOW_CANCELLED") out.push(`getResult of a CANCELLED workflow gave ${result.ok ? `→ ${printValue(result.value)}` : printOutcome(d)}, expected WorkflowCancelledError`);
  } else if (result && status === expected.status) {
    if (expected.status === "SUCCESS") {
      if (!result.ok) out.push(`getResult rejected with ${printOutcome(describeError(result.error))}, expected the program's value`);
      else if (!deepEqualJson(output?.value, expected.value)) out.push(`getResult value ${printValue(output?.value)}, expected ${printValue(expected.value)}`);
    } else {
      const d = result.ok ? undefined : describeError(result.error);
      if (!d || !matches(d, expected.expect)) out.push(`getResult gave ${result.ok ? `→ ${printValue(result.value)}` : printOutcome(d)}, expected ${printExpect(expected.expect)}`);
    }
  }
  if (f.early !== undefined && result !== undefined && result !== "hung") {
    const early = f.early;
    const closedEngine = early !== "hung" && !early.ok && describeError(early.error).hasOwnProperty("code") && (describeError(early.error) as { code?: string }).code === "ENGINE_CLOSED";
    if (early === "hung") out.push("getResult asked at the start never settled");
    else if (!closedEngine && !deepEqualJson(settledForm(early), settledForm(result))) {
      out.push(`getResult asked at the start gave ${printSettled(early)}, but at the end ${printSettled(result)}`);
    }
  }

  // ---- outcomes of ctx calls
  if (output && status === "SUCCESS") {
    for (const [key, expect] of model.outcomes) {
      if (!matches(output.outcomes[key], expect)) out.push(`call ${key}: ${printOutcome(output.outcomes[key])}, expected ${printExpect(expect)}`);
    }
    for (const key of Object.keys(output.outcomes)) if (!model.outcomes.has(key)) out.push(`call ${key} happened (${printOutcome(output.outcomes[key])}), but the program never gets there`);
  }
  const normal = new Map<string, { run: string; outcome: Outcome }>();
  for (const e of f.journal.events) {
    if (e.kind !== "outcome") continue;
    const expect = model.outcomes.get(e.key);
    if (isAbandonOutcome(e.outcome)) {
      if (!f.interrupted) out.push(`run ${e.run}: call ${e.key} gave ${printOutcome(e.outcome)} though nothing ended the run`);
      continue;
    }
    if (!expect) {
      out.push(`run ${e.run}: call ${e.key} happened (${printOutcome(e.outcome)}), but the program never gets there`);
      continue;
    }
    if (!matches(e.outcome, expect)) out.push(`run ${e.run}: call ${e.key} ${printOutcome(e.outcome)}, expected ${printExpect(expect)}`);
    const seen = normal.get(e.key);
    if (!seen) normal.set(e.key, { run: e.run, outcome: e.outcome });
    else if (!deepEqualJson(seen.outcome, e.outcome)) {
      out.push(`call ${e.key} gave ${printOutcome(seen.outcome)} in run ${seen.run} but ${printOutcome(e.outcome)} in run ${e.run} (a replay must see what the first run saw)`);
    }
  }

  // ---- steps recorded
  for (const s of f.steps) {
    const m = model.steps[s.stepId];
    if (!m) out.push(`step #${s.stepId} ("${s.name}") is recorded, but the program calls only ${model.steps.length} steps`);
    else if (m.op.name !== s.name) out.push(`step #${s.stepId} is recorded as "${s.name}", but the program's step #${s.stepId} is "${m.op.name}"`);
  }

  // ---- streams
  const terminal = status === "SUCCESS" || status === "ERROR" || status === "CANCELLED";
  const complete = status === "SUCCESS" || status === "ERROR";
  const byKey = new Map<string, StoredRow[]>();
  for (const r of f.rows) {
    let list = byKey.get(r.key);
    if (!list) byKey.set(r.key, (list = []));
    list.push(r);
  }
  const keys = new Set([...byKey.keys(), ...model.writes.keys()]);
  for (const key of keys) {
    const rows = (byKey.get(key) ?? []).sort((a, b) => a.offset - b.offset);
    checkStream(f, key, rows, model.writes.get(key) ?? [], { terminal, complete, finalOutcomes }, out);
  }
  checkInStep(f, byKey, out);
  checkReaders(f, byKey, out);
  checkStepsAfterEnds(f, out);
  return out;
}

function settledForm(s: Settled): unknown {
  return s.ok ? { ok: s.value } : { error: describeError(s.error) };
}

function printSettled(s: Settled): string {
  return s.ok ? `→ ${printValue(s.value)}` : printOutcome(describeError(s.error));
}

function checkStream(
  f: CaseFacts, key: string, rows: StoredRow[], expected: ExpectedWrite[],
  state: { terminal: boolean; complete: boolean; finalOutcomes: Map<string, Outcome> }, out: string[],
): void {
  const where = `stream ${JSON.stringify(key)}`;
  rows.forEach((r, i) => {
    if (r.offset !== i) out.push(`${where}: offset ${r.offset} at position ${i} (offsets must be 0, 1, 2, … with no gap)`);
  });
  const closes = rows.filter((r) => r.closed);
  if (closes.length > 1) out.push(`${where}: ${closes.length} closes stored`);
  if (closes.length > 0 && !rows.at(-1)!.closed) out.push(`${where}: entries stored after its close (at offset ${closes[0]!.offset})`);
  if (state.terminal && rows.length > 0 && !rows.at(-1)!.closed) out.push(`${where}: not closed although the workflow is ${f.status}`);

  const inStepKey = f.model.inStepKeys.has(key);
  const code: { tag: string; row: StoredRow }[] = [];
  for (const r of rows) {
    if (r.closed) continue;
    const tag = codeTag(r.value);
    if (tag !== undefined) code.push({ tag, row: r });
    else if (!stepWrite(r.value)) out.push(`${where}: offset ${r.offset} holds ${printValue(r.value)}, which the program never writes`);
    else if (!inStepKey) out.push(`${where}: offset ${r.offset} holds an in-step write, but no step writes to this stream`);
  }
  // Exactly once.
  const seen = new Map<string, number>();
  for (const c of code) {
    const first = seen.get(c.tag);
    if (first !== undefined) out.push(`${where}: write ${c.tag} stored twice, at offsets ${first} and ${c.row.offset} (exactly-once from workflow code)`);
    else seen.set(c.tag, c.row.offset);
  }
  // In program order, each with its value; none missing (or, if cancelled, a prefix).
  const position = new Map(expected.map((w, i) => [w.tag, i]));
  let last = -1;
  for (const c of code) {
    const i = position.get(c.tag);
    if (i === undefined) {
      out.push(`${where}: offset ${c.row.offset} holds write ${c.tag} (${printValue(c.row.value)}), which the program does not make here (it must be refused or never happen)`);
      continue;
    }
    const w = expected[i]!;
    if (w.close) continue;
    if (!deepEqualJson(c.row.value, w.entry)) out.push(`${where}: write ${c.tag} stored as ${printValue(c.row.value)}, expected ${printValue(w.entry)}`);
    if (i < last) out.push(`${where}: write ${c.tag} stored after write ${expected[last]!.tag} (program order is the other way)`);
    last = Math.max(last, i);
  }
  const storedTags = new Set(code.map((c) => c.tag));
  const closeRow = rows.find((r) => r.closed);
  let missing: string | undefined;
  for (const w of expected) {
    const outcome = state.finalOutcomes.get(w.tag);
    const refused = outcome !== undefined && "code" in outcome && outcome.code === "SERIALIZATION";
    if (w.close) {
      const before = code.filter((c) => (position.get(c.tag) ?? Infinity) < position.get(w.tag)!).length;
      const after = code.filter((c) => (position.get(c.tag) ?? -1) > position.get(w.tag)!).length;
      if (after > 0) out.push(`${where}: ${after} writes made after the close (op #${w.tag}) are stored`);
      if (state.complete && !inStepKey && closeRow && closeRow.offset !== before && missing === undefined) {
        out.push(`${where}: the close (op #${w.tag}) is at offset ${closeRow.offset}, expected ${before} (its place among the workflow's writes)`);
      }
      continue;
    }
    if (w.either && outcome !== undefined) {
      if (refused && storedTags.has(w.tag)) out.push(`${where}: write ${w.tag} was refused (${printOutcome(outcome)}) but is stored`);
      if (!refused && !isAbandonOutcome(outcome) && !storedTags.has(w.tag) && state.complete) out.push(`${where}: write ${w.tag} resolved but is not stored`);
      continue;
    }
    if (w.either) continue;
    if (!storedTags.has(w.tag)) {
      if (state.complete) out.push(`${where}: write ${w.tag} (${printValue(w.entry)}) is not stored although the workflow ${f.status === "SUCCESS" ? "succeeded" : "ended"}`);
      missing ??= w.tag;
    } else if (missing !== undefined) {
      out.push(`${where}: write ${w.tag} is stored but the earlier write ${missing} is not (a later write without an earlier one)`);
    }
  }
  // Deterministic offsets where no step writes: write k of the stream at offset k.
  if (!inStepKey) {
    let k = 0;
    for (const w of expected) {
      if (w.close) break;
      const offset = seen.get(w.tag);
      if (offset === undefined) {
        if (w.either) continue;
        break;
      }
      if (offset !== k) out.push(`${where}: write ${w.tag} at offset ${offset}, expected ${k} (the ${k + 1}${["st", "nd", "rd"][k] ?? "th"} write of this stream)`);
      k++;
    }
  }
}

function checkInStep(f: CaseFacts, byKey: Map<string, StoredRow[]>, out: string[]): void {
  const count = new Map<string, number>();
  const perToken = new Map<string, number[]>();
  for (const [key, rows] of byKey) {
    for (const r of rows) {
      const w = stepWrite(r.value);
      if (!w) continue;
      if (!f.started.has(w.t)) out.push(`stream ${JSON.stringify(key)}: offset ${r.offset} holds an in-step write of attempt ${w.t}, which never started`);
      const spec = f.model.inStep.find((s) => s.op === w.op && s.j === w.j);
      if (!spec || spec.key !== key || !deepEqualJson(spec.value, w.v)) {
        out.push(`stream ${JSON.stringify(key)}: offset ${r.offset} holds in-step write ${w.op}/${w.j} = ${printValue(w.v)}, which step #${w.op} does not write there`);
      }
      count.set(`${w.op}/${w.j}`, (count.get(`${w.op}/${w.j}`) ?? 0) + 1);
      let js = perToken.get(`${key}\u0000${w.t}`);
      if (!js) perToken.set(`${key}\u0000${w.t}`, (js = []));
      js.push(w.j);
    }
  }
  for (const [k, js] of perToken) {
    const [key, token] = k.split("\u0000");
    const dup = js.find((j, i) => js.indexOf(j) !== i);
    if (dup !== undefined) out.push(`stream ${JSON.stringify(key)}: attempt ${token}'s in-step write ${dup} is stored twice`);
    for (let i = 1; i < js.length; i++) {
      if (js[i]! < js[i - 1]!) out.push(`stream ${JSON.stringify(key)}: attempt ${token}'s in-step writes are out of order (${js.join(", ")})`);
    }
  }
  // At least once: every step whose outcome is recorded stored its writes.
  const recorded = new Set(f.steps.map((s) => s.stepId));
  for (const s of f.model.steps) {
    if (!recorded.has(s.stepId)) continue;
    for (let j = 0; j < s.storesWrites; j++) {
      if (!count.has(`${s.op.id}/${j}`)) out.push(`step #${s.op.id} is recorded, but its in-step write ${j} (to ${JSON.stringify(s.op.writes[j]!.key)}) is not stored (at least once)`);
    }
  }
}

function checkReaders(f: CaseFacts, byKey: Map<string, StoredRow[]>, out: string[]): void {
  for (const [i, r] of f.readers.entries()) {
    const name = `reader ${i} (${r.spec.api} of ${JSON.stringify(r.key)} from ${r.from}, on ${r.engine})`;
    const stored = (byKey.get(r.key) ?? []).filter((row) => !row.closed && row.offset >= r.from);
    if (r.afterAbort > 0) out.push(`${name}: yielded ${r.afterAbort} entries for next() calls made after its signal fired`);
    if (!r.end) {
      out.push(`${name}: never ended`);
      continue;
    }
    const prefix = r.got.every((g, k) => stored[k] !== undefined && g.offset === stored[k]!.offset && deepEqualJson(g.value, stored[k]!.value));
    const whole = prefix && r.got.length === stored.length;
    if (r.end.how === "closed") {
      if (r.controller.signal.aborted && prefix) continue;
      if (!whole) {
        const got = r.got.map((g) => g.offset).join(",");
        out.push(`${name}: got offsets [${got}] then the close, but the table holds [${stored.map((s) => s.offset).join(",")}] from ${r.from}` +
          (prefix ? "" : ` (first difference at position ${r.got.findIndex((g, k) => !stored[k] || g.offset !== stored[k]!.offset || !deepEqualJson(g.value, stored[k]!.value))})`));
      }
      continue;
    }
    const d = describeError(r.end.error);
    const code = "code" in d ? d.code : undefined;
    if (r.controller.signal.aborted) {
      if (!prefix) out.push(`${name}: aborted after entries that differ from the table`);
      continue;
    }
    if (code === "ENGINE_CLOSED") {
      if (!prefix) out.push(`${name}: ended by its engine's close after entries that differ from the table`);
      continue;
    }
    out.push(`${name}: failed with ${printOutcome(d)}`);
  }
}

/** No step body starts after cancelWorkflow resolved, or after its engine's close() resolved. */
function checkStepsAfterEnds(f: CaseFacts, out: string[]): void {
  if (!f.sequenced) return;
  const ends = f.journal.events.filter((e) => e.kind === "cancel-resolved" || e.kind === "close-resolved");
  for (const end of ends) {
    for (const e of f.journal.events) {
      if (e.kind !== "step-start" || e.seq < end.seq) continue;
      if (end.kind === "close-resolved" && engineOf(e.run) !== (end as Stamped & { engine: string }).engine) continue;
      out.push(`step #${e.op} attempt ${e.attempt} started (run ${e.run}) after ${end.kind === "cancel-resolved" ? "cancelWorkflow" : `engine ${(end as { engine: string }).engine}'s close()`} resolved`);
    }
  }
}
