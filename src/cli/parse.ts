// Checks on command-line values, reported as usage errors.
import { databaseUrlProblem } from "../db/databaseUrl.js";
import { redactUrl } from "../db/redact.js";
import { UsageError, type OptionValues } from "./command.js";

/** A non-negative integer option, or undefined when absent. */
export function parseCount(name: string, value: string | boolean | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = typeof value === "string" && /^[0-9]+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n)) throw new UsageError(`${name} must be a non-negative integer, got ${JSON.stringify(value)}`);
  return n;
}

export function databaseUrlOf(values: OptionValues, env: NodeJS.ProcessEnv): string {
  const url = (values["database-url"] as string | undefined) || env.DATABASE_URL;
  if (!url) {
    throw new UsageError(
      "no database: pass --database-url postgres://… or set DATABASE_URL " +
        "(the web demo prints the URL of its embedded Postgres when it starts)",
    );
  }
  // Checked here, not by the driver: its parse error would carry the whole URL, password and all.
  const problem = databaseUrlProblem(url);
  if (problem) throw new UsageError(`${values["database-url"] ? "--database-url" : "DATABASE_URL"} ${problem}, got ${redactUrl(url)}`);
  return url;
}
