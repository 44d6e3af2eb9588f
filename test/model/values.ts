// Values as the interpreter builds them and as the checker expects them stored, and the
// one way both describe what a ctx call resolved or rejected with (an "outcome").
import { createHash } from "node:crypto";
import { PgtideError } from "../../src/index.js";
import { messageOf, type Json, type Thrown, type Value } from "./program.js";

/** The value-size limit of every engine the harness opens (the README's default). */
export const MAX_VALUE_BYTES = 1_048_576;

/** Registered in every engine's errorClasses: comes back as itself on replay. */
export class ModelError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ModelError";
  }
}

/** Not registered: a replay gives an Error named "StrayError". */
export class StrayError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StrayError";
  }
}

/** Arrays nested `depth` deep around a 0. */
export function nested(depth: number): unknown {
  let v: unknown = 0;
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

/** A value of the program as a JS value (`undefined` and friends for the bad ones). */
export function build(value: Value, padTo?: (overhead: string) => number): unknown {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return value;
  if ("$bad" in value) {
    switch (value.$bad) {
      case "undefined": return undefined;
      case "nan": return Number.NaN;
      case "infinity": return Number.POSITIVE_INFINITY;
      case "bigint": return 10n;
      case "nul": return "a\u0000b";
      case "lone-surrogate": return "a\ud800b";
      case "date": return new Date(0);
      case "map": return new Map([["a", 1]]);
      case "function": return () => 1;
      case "symbol-key": return { [Symbol("s")]: 1, a: 1 };
      // eslint-disable-next-line no-sparse-arrays
      case "sparse": return [1, , 3];
    }
  }
  if ("$deep" in value && typeof value.$deep === "number") return nested(value.$deep);
  if ("$big" in value) {
    const bytes = value.$big === "limit" ? MAX_VALUE_BYTES : value.$big === "over" ? MAX_VALUE_BYTES + 1 : Number(value.$big);
    const overhead = padTo ? padTo("") : 2;
    return "x".repeat(Math.max(0, bytes - overhead));
  }
  return value;
}

/**
 * What a write from workflow code stores: the value tagged with the op that wrote it,
 * so the checker can tell each write apart (`tag` is "<op id>", "<id>:b", "<id>:t0"…).
 * A `$big` value is padded so that the whole entry has the size it names.
 */
export function codeEntry(tag: string, value: Value): unknown {
  return { op: tag, v: build(value, (pad) => Buffer.byteLength(JSON.stringify({ op: tag, v: pad }))) };
}

/** An in-step write: the op, the write's index in the step, and the attempt that made it. */
export function stepEntry(op: number, j: number, token: string, value: Json): unknown {
  return { step: op, j, t: token, v: value };
}

/** How a value is treated: stored, refused with SerializationError, or either (by name). */
export function acceptance(value: Value): "stored" | "refused" | "either" {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return "stored";
  if ("$bad" in value) return "refused";
  if ("$deep" in value) return Number(value.$deep) <= 64 ? "stored" : "either";
  if ("$big" in value) return value.$big === "over" ? "refused" : "stored";
  return "stored";
}

export function makeThrown(thrown: Thrown): unknown {
  if ("value" in thrown) return build(thrown.value as Value);
  const message = messageOf(thrown);
  switch (thrown.error) {
    case "Error": return new Error(message);
    case "TypeError": return new TypeError(message);
    case "RangeError": return new RangeError(message);
    case "ModelError": return new ModelError(message);
    case "StrayError": return new StrayError(message);
  }
}

// ---------------------------------------------------------------------------------------
// Outcomes

/** What a ctx call (or the workflow) resolved or rejected with, as storable JSON. */
export type Outcome =
  | { ok: Json }
  | { okDigest: string; bytes: number }
  | { undef: true }
  | { err: string; msg: string; cls: string; code?: string }
  | { thrown: Json; undef?: true };

/** NUL and lone surrogates spelled out, so that any message text can be stored and compared. */
export function escapeText(text: string): string {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const high = c >= 0xd800 && c <= 0xdbff;
    const low = c >= 0xdc00 && c <= 0xdfff;
    if (high && i + 1 < text.length && text.charCodeAt(i + 1) >= 0xdc00 && text.charCodeAt(i + 1) <= 0xdfff) {
      out += text[i]! + text[i + 1]!;
      i++;
    } else if (c === 0 || high || low) {
      out += `\\u{${c.toString(16)}}`;
    } else {
      out += text[i]!;
    }
  }
  return out;
}

/** JSON with sorted keys (jsonb does not keep key order). */
export function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

export function describeOk(value: unknown): Outcome {
  if (value === undefined) return { undef: true };
  const json = canonical(value);
  if (json.length <= 300) return { ok: value as Json };
  return { okDigest: createHash("sha256").update(json).digest("hex").slice(0, 16), bytes: json.length };
}

/** The class a program (or pgtide) threw, as the checker compares it. */
export function classOf(error: Error): string {
  if (error instanceof PgtideError) return "Pgtide";
  if (error instanceof ModelError) return "ModelError";
  if (error instanceof TypeError) return "TypeError";
  if (error instanceof RangeError) return "RangeError";
  return "Error";
}

export function describeError(thrown: unknown): Outcome {
  if (thrown instanceof Error) {
    const code = thrown instanceof PgtideError ? String(thrown.code) : undefined;
    return { err: String(thrown.name), msg: escapeText(String(thrown.message)), cls: classOf(thrown), ...(code ? { code } : {}) };
  }
  if (thrown === undefined) return { thrown: null, undef: true };
  try {
    return { thrown: JSON.parse(JSON.stringify(thrown)) as Json };
  } catch {
    return { thrown: `<not JSON: ${typeof thrown}>` };
  }
}

/** Errors that end a run without being its outcome (cancel, close, outage, finished). */
export const ABANDON_CODES = ["WORKFLOW_CANCELLED", "ENGINE_CLOSED", "CONNECTION", "WORKFLOW_FINISHED"] as const;

export function isAbandonOutcome(outcome: Outcome): boolean {
  return "code" in outcome && (ABANDON_CODES as readonly string[]).includes(outcome.code ?? "");
}

export function printOutcome(outcome: Outcome | undefined): string {
  if (outcome === undefined) return "(nothing)";
  if ("undef" in outcome && !("thrown" in outcome)) return "undefined";
  if ("ok" in outcome) return `→ ${JSON.stringify(outcome.ok)}`;
  if ("okDigest" in outcome) return `→ <${outcome.bytes} bytes ${outcome.okDigest}>`;
  if ("err" in outcome) return `✗ ${outcome.err}${outcome.code ? `[${outcome.code}]` : ""}(${JSON.stringify(outcome.msg)}) as ${outcome.cls}`;
  return `✗ thrown ${outcome.undef ? "undefined" : JSON.stringify(outcome.thrown)}`;
}
