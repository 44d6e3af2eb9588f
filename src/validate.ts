// Checks on caller input, run before anything touches the database.
import { InvalidArgumentError } from "./errors.js";

/** Ids, keys and names travel in NOTIFY payloads (< 8000 bytes), hence the bound. */
export const MAX_NAME_LENGTH = 200;

// C0 controls, DEL and C1 controls: they make ids unprintable in logs, SSE and terminals
// (U+009B is a terminal's CSI), and NUL cannot be stored.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

export function assertName(what: string, value: unknown): asserts value is string {
  if (typeof value !== "string") {
    throw new InvalidArgumentError(`${what} must be a string, got ${describe(value)}`);
  }
  if (value.length === 0) throw new InvalidArgumentError(`${what} must not be empty`);
  // Characters are code points (an emoji is one), at most 4 bytes each in the payload.
  const characters = value.length > MAX_NAME_LENGTH ? [...value].length : value.length;
  if (characters > MAX_NAME_LENGTH) {
    throw new InvalidArgumentError(`${what} is ${characters} characters long; the limit is ${MAX_NAME_LENGTH}`);
  }
  if (CONTROL.test(value)) throw new InvalidArgumentError(`${what} must not contain control characters`);
  if (!value.isWellFormed()) throw new InvalidArgumentError(`${what} contains a lone UTF-16 surrogate`);
}

export function assertOffset(what: string, value: unknown): asserts value is number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(`${what} must be a non-negative integer, got ${describe(value)}`);
  }
}

// Lower case only: search_path folds unquoted names, and the NOTIFY channel
// ("pgtide." + schema) must stay under Postgres's 63-byte identifier limit. Postgres
// reserves pg_* for itself, and information_schema is its catalog's.
const SCHEMA = /^[a-z_][a-z0-9_]{0,49}$/;
const RESERVED_SCHEMA = /^(pg_|information_schema$)/;

export function assertSchemaName(value: unknown): asserts value is string {
  if (typeof value !== "string" || !SCHEMA.test(value)) {
    throw new InvalidArgumentError(
      `schema must be a lower-case SQL identifier of at most 50 characters ([a-z_][a-z0-9_]*), got ${describe(value)}`,
    );
  }
  if (RESERVED_SCHEMA.test(value)) {
    throw new InvalidArgumentError(`schema ${describe(value)} is reserved by Postgres (pg_* and information_schema)`);
  }
}

export function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "function") return "a function";
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  return String(value);
}
