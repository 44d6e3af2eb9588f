// Values are stored as jsonb. A value is accepted only if JSON round-trips it faithfully:
// what a reader gets back equals what the writer gave (object key order aside, which
// jsonb normalises, and -0, which JSON writes as 0: refusing it would fail a write of
// Math.round(-0.4)). Anything else is refused before it is written.
import { SerializationError } from "./errors.js";

/**
 * Deepest nesting of arrays and objects a value may have. Postgres's jsonb parser is
 * recursive (with the default max_stack_depth of 2 MB it took 10,000 levels and refused
 * 50,000), and so are V8's JSON.stringify (it overflowed at 10,000) and this check; 1,000
 * is far past any real document and safe in all three.
 */
export const MAX_DEPTH = 1000;

/** Encodes a value as JSON text, or throws SerializationError naming the first bad part. */
export function encodeJson(value: unknown, what: string, maxBytes: number): string {
  if (typeof value === "string") {
    checkString(value, what); // the hot path: LLM tokens
  } else {
    checkValue(value, what, new Set(), 0);
  }
  const json = JSON.stringify(value);
  // Cheap bound first: a UTF-16 unit is at most 3 UTF-8 bytes.
  if (json.length * 3 > maxBytes) {
    const bytes = Buffer.byteLength(json);
    if (bytes > maxBytes) {
      throw new SerializationError(`${what} is ${bytes} bytes as JSON; the limit is ${maxBytes} (option maxValueBytes)`);
    }
  }
  return json;
}

function checkValue(value: unknown, path: string, ancestors: Set<object>, depth: number): void {
  switch (typeof value) {
    case "string":
      return checkString(value, path);
    case "boolean":
      return;
    case "number":
      if (!Number.isFinite(value)) throw new SerializationError(`${path} is ${value}, which JSON cannot represent`);
      return;
    case "object": {
      if (value === null) return;
      if (ancestors.has(value)) throw new SerializationError(`${path} is circular`);
      if (depth >= MAX_DEPTH) {
        const where = path.length > 120 ? `${path.slice(0, 120)}…` : path;
        throw new SerializationError(`${where} is nested more than ${MAX_DEPTH} levels deep (the limit)`);
      }
      ancestors.add(value);
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          if (!(i in value)) throw new SerializationError(`${path}[${i}] is a hole in a sparse array`);
          checkValue(value[i], `${path}[${i}]`, ancestors, depth + 1);
        }
      } else {
        const proto = Object.getPrototypeOf(value);
        if (proto !== Object.prototype && proto !== null) {
          const kind = (value as object).constructor?.name ?? "object";
          throw new SerializationError(`${path} is a ${kind}; only plain objects, arrays, strings, finite numbers, booleans and null are stored`);
        }
        if (Object.getOwnPropertySymbols(value).length > 0) {
          throw new SerializationError(`${path} has symbol keys, which JSON drops`);
        }
        for (const [k, v] of Object.entries(value)) {
          checkString(k, `${path} key ${JSON.stringify(k)}`);
          checkValue(v, `${path}.${k}`, ancestors, depth + 1);
        }
      }
      ancestors.delete(value);
      return;
    }
    default:
      // undefined, bigint, function, symbol
      throw new SerializationError(`${path} is ${typeof value === "undefined" ? "undefined" : `a ${typeof value}`}, which JSON cannot represent`);
  }
}

function checkString(value: string, path: string): void {
  // jsonb rejects \u0000, and a lone surrogate does not survive UTF-8.
  if (value.includes("\u0000")) throw new SerializationError(`${path} contains a NUL character, which jsonb cannot store`);
  if (!value.isWellFormed()) throw new SerializationError(`${path} contains a lone UTF-16 surrogate`);
}
