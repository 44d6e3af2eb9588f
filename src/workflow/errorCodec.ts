// Errors thrown by steps and workflows are stored as JSON and rebuilt on replay as the
// same class with the same message: built-in classes, pgtide's own, and any class the
// user lists in `errorClasses`. An unknown class comes back as an Error with its name.
import * as pgtideErrors from "../errors.js";
import type { ErrorClass } from "../config.js";

export interface StoredError {
  name: string;
  message: string;
  stack?: string;
  /** Own enumerable properties that survive JSON (e.g. `code`). */
  props?: Record<string, unknown>;
}

const BUILTIN: ErrorClass[] = [Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError];

export class ErrorCodec {
  private classes = new Map<string, ErrorClass>();

  constructor(userClasses: ErrorClass[]) {
    for (const c of BUILTIN) this.classes.set(c.name, c);
    for (const c of Object.values(pgtideErrors)) this.classes.set(c.name, c as ErrorClass);
    for (const c of userClasses) this.classes.set(c.name, c);
  }

  encode(error: unknown): StoredError {
    if (!(error instanceof Error)) return { name: "Error", message: `non-Error thrown: ${safeString(error)}` };
    const props: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(error)) {
      if (k === "name" || k === "message" || k === "stack") continue;
      try {
        props[k] = JSON.parse(JSON.stringify(v));
      } catch {
        // not JSON: dropped
      }
    }
    return { name: error.name, message: error.message, stack: error.stack, props };
  }

  decode(stored: StoredError): Error {
    const cls = this.classes.get(stored.name) ?? Error;
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
}

function safeString(value: unknown): string {
  try {
    return typeof value === "string" ? value : JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
