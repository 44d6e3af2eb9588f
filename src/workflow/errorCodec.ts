// What a step or workflow throws is stored as JSON and thrown again on replay, so a
// recovered run sees what the first run saw:
// - an Error comes back as the same class (built-ins, pgtide's own, and the classes the
//   user lists in `errorClasses`; an unknown class as an Error with its name), with its
//   message, stack and JSON-representable own properties (e.g. `code`);
// - any other thrown value that JSON represents faithfully (a string, a number, a plain
//   object…) comes back as an equal value;
// - what cannot be stored (a thrown undefined, function or Date; a message with a NUL
//   character, which jsonb refuses; anything past maxValueBytes) is replaced, on the
//   first run already, by a SerializationError that says so. Either way both runs agree.
import type { ErrorClass } from "../config.js";
import * as pgtideErrors from "../errors.js";
import { SerializationError } from "../errors.js";
import { encodeJson } from "../json.js";
import { describe } from "../validate.js";

export type StoredError =
  | {
      /** Absent for an Error (rows stored before 0.2 have no kind either). */
      kind?: "error";
      name: string;
      /** The class, when its name is not the error's (a DOMException named "AbortError"). */
      class?: string;
      message: string;
      stack?: string;
      /** Own enumerable properties that survive JSON (e.g. `code`). */
      props?: Record<string, unknown>;
    }
  | { kind: "value"; value: unknown };

/** A thrown value ready to store: its JSON, and what the current run throws now. */
export interface EncodedError {
  json: string;
  /** The original when it is stored faithfully, else the SerializationError that replaces it. */
  thrown: unknown;
}

const BUILTIN: ErrorClass[] = [
  Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError, AggregateError,
  DOMException as unknown as ErrorClass,
];

export class ErrorCodec {
  private classes = new Map<string, ErrorClass>();

  constructor(userClasses: ErrorClass[], private readonly maxBytes: number) {
    for (const c of BUILTIN) this.classes.set(c.name, c);
    for (const c of Object.values(pgtideErrors)) this.classes.set(c.name, c as ErrorClass);
    for (const c of userClasses) this.classes.set(c.name, c);
  }

  /** `what` names the thrower in a refusal, e.g. `step "fetch"`. */
  encode(thrown: unknown, what: string): EncodedError {
    try {
      return { json: this.store(thrown, what), thrown };
    } catch (error) {
      // A getter that throws, a Proxy…: what cannot be read cannot be stored either.
      const refusal = error instanceof SerializationError
        ? error
        : new SerializationError(`${what} threw a value that could not be read as an error`);
      // Our own short message, stored whatever maxValueBytes says: something must be.
      return { json: JSON.stringify({ name: refusal.name, message: refusal.message, props: { code: refusal.code } }), thrown: refusal };
    }
  }

  decode(stored: StoredError): unknown {
    if (stored.kind === "value") return stored.value;
    const cls = this.classes.get(stored.class ?? stored.name) ?? Error;
    // Its message and name live in internal slots: only its constructor makes one.
    if (cls === (DOMException as unknown)) return withStack(new DOMException(stored.message, stored.name), stored.stack);
    const error = Object.create(cls.prototype) as Error;
    Object.defineProperty(error, "message", { value: stored.message, writable: true, configurable: true });
    if (stored.stack) Object.defineProperty(error, "stack", { value: stored.stack, writable: true, configurable: true });
    Object.assign(error, stored.props ?? {});
    // Classes that set `this.name` in their constructor keep it as an own property.
    if (error.name !== stored.name) {
      Object.defineProperty(error, "name", { value: stored.name, writable: true, configurable: true });
    }
    return error;
  }

  /**
   * The JSON to store, or SerializationError when the thrown value cannot be stored as
   * it is. Each part the user gave is checked on its own (depth counted from the part,
   * as for any value), then wrapped: the wrapper's own levels are pgtide's, not theirs.
   */
  private store(thrown: unknown, what: string): string {
    if (!(thrown instanceof Error)) {
      if (typeof thrown !== "object" && typeof thrown !== "string" && typeof thrown !== "number" && typeof thrown !== "boolean") {
        throw new SerializationError(`${what} threw ${describe(thrown)}, which JSON cannot represent: throw an Error instead`);
      }
      const value = encodeJson(thrown, `the value thrown by ${what}`, this.maxBytes);
      return this.bounded(`{"kind":"value","value":${value}}`, what);
    }
    const name = encodeJson(String(thrown.name), `the name of the error thrown by ${what}`, this.maxBytes);
    const message = encodeJson(String(thrown.message), `the message of the error thrown by ${what}`, this.maxBytes);
    const props: string[] = [];
    for (const [k, v] of Object.entries(thrown)) {
      if (k === "name" || k === "message" || k === "stack") continue;
      try {
        props.push(`${encodeJson(k, "key", this.maxBytes)}:${encodeJson(v, k, this.maxBytes)}`);
      } catch {
        // Not faithful as JSON (a Date, a cause that is an Error…): left out, as JSON.stringify would.
      }
    }
    let stack: string | undefined;
    try {
      if (typeof thrown.stack === "string") stack = encodeJson(thrown.stack, "stack", this.maxBytes);
    } catch {
      // A stack that cannot be stored is only a debugging aid.
    }
    const className = thrown.constructor?.name;
    const cls = typeof className === "string" && className !== thrown.name && this.classes.has(className)
      ? `,"class":${JSON.stringify(className)}`
      : "";
    const base = `"name":${name}${cls},"message":${message}`;
    const withProps = `${base},"props":{${props.join(",")}}`;
    // The stack goes first when it does not fit, then the extra properties; the name and
    // message must.
    const attempts = [...(stack === undefined ? [] : [`{${withProps},"stack":${stack}}`]), `{${withProps}}`];
    for (const attempt of attempts) if (Buffer.byteLength(attempt) <= this.maxBytes) return attempt;
    return this.bounded(`{${base}}`, what);
  }

  private bounded(json: string, what: string): string {
    const bytes = Buffer.byteLength(json);
    if (bytes > this.maxBytes) {
      throw new SerializationError(`what ${what} threw is ${bytes} bytes as JSON; the limit is ${this.maxBytes} (option maxValueBytes)`);
    }
    return json;
  }
}

function withStack<E extends Error>(error: E, stack: string | undefined): E {
  if (stack) Object.defineProperty(error, "stack", { value: stack, writable: true, configurable: true });
  return error;
}
