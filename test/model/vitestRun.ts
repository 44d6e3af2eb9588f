// The bounded run of a property inside `npm test`: a time budget instead of a case count,
// replay through MODEL_SEED / MODEL_PATH (a failure prints both), and the report printed.
import { expect, inject } from "vitest";
import { runCampaign, type Kind } from "./properties.js";

export interface Bounds {
  /** No new case starts after this many seconds. */
  searchSeconds: number;
  /** Shrinking a failure stops after this many more. */
  shrinkSeconds: number;
}

export async function runBounded(kind: Kind, bounds: Bounds): Promise<void> {
  const seed = process.env.MODEL_SEED;
  const path = process.env.MODEL_PATH;
  const result = await runCampaign({
    kind,
    url: inject("databaseUrl"),
    runs: Number(process.env.MODEL_RUNS ?? 10_000),
    ...(seed ? { seed: Number(seed) } : {}),
    ...(path ? { path } : {}),
    budgetMs: bounds.searchSeconds * 1000,
    shrinkBudgetMs: bounds.shrinkSeconds * 1000,
  });
  console.log(result.report);
  expect(result.failed, `${result.report}\n(replay in vitest: MODEL_SEED=${result.seed}${result.path ? ` MODEL_PATH=${result.path}` : ""})`).toBe(false);
}
