// Progress entries: what `ctx.writeProgress` writes and the CLI's and web demo's bars read.
import { InvalidArgumentError } from "../errors.js";
import { describe } from "../validate.js";

/** A progress entry, as `writeProgress` writes it and the CLI and the web page read it. */
export interface Progress {
  /** Units done so far: 0 ≤ done ≤ total. */
  done: number;
  /** Units in all. */
  total: number;
  /** What is being done, e.g. "download". */
  label?: string;
}

/** A copy of `progress` with only its known fields, or InvalidArgumentError naming the problem. */
export function checkProgress(progress: Progress): Progress {
  if (typeof progress !== "object" || progress === null) {
    throw new InvalidArgumentError(`progress must be an object { done, total, label? }, got ${describe(progress)}`);
  }
  const { done, total, label } = progress;
  for (const [name, value] of [["done", done], ["total", total]] as const) {
    if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
      throw new InvalidArgumentError(`progress.${name} must be a finite non-negative number, got ${describe(value)}`);
    }
  }
  if (done > total) throw new InvalidArgumentError(`progress.done (${done}) must not exceed progress.total (${total})`);
  if (label !== undefined && typeof label !== "string") {
    throw new InvalidArgumentError(`progress.label must be a string, got ${describe(label)}`);
  }
  return label === undefined ? { done, total } : { done, total, label };
}
