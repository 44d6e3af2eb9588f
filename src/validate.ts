// Checks on caller input, run before anything touches the database.
import { InvalidArgumentError } from "./errors.js";

/** Ids, keys and names travel in NOTIFY payloads (< 8000 bytes), hence the bound. */
export const MAX_NAME_LENGTH = 200;

// C0 controls and DEL: they make ids unprintable in logs and SSE, and NUL cannot be stored.
const CONTROL = /[\u0000-\u001f\u007f]/;

export function assertName(what: string, value: unknown): asserts value is string {
  if (typeof value !== "string") {
    throw new InvalidArgumentError(`${what} must be a string, got ${describe(value)}`);
  }
  if (value.length === 0) throw new InvalidArgumentError(`${what} must not be empty`);
  if (value.length > MAX_NAME_LENGTH) {
    throw new InvalidArgumentError(`${what} is ${value.length} characters long; the limit is ${MAX_NAME_LENGTH}`);
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
// ("pgtide." + schema) must stay under Postgres's 63-byte identifier limit.
const SCHEMA = /^[a-z_][a-z0-9_]{0,49}$/;

export function assertSchemaName(value: unknown): asserts value is string {
  if (typeof value !== "string" || !SCHEMA.test(value)) {
    throw new InvalidArgumentError(
      `schema must be a lower-case SQL identifier of at most 50 characters ([a-z_][a-z0-9_]*), got ${describe(value)}`,
    );
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
