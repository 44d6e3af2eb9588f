// Runs one workflow function to its end and records the outcome. A workflow that was
// cancelled, whose engine closed, or that lost Postgres stays as it is in the table
// (CANCELLED, or PENDING for recovery to finish later).
import { ConnectionError, EngineClosedError, WorkflowCancelledError, WorkflowFinishedError } from "../errors.js";
import { encodeJson } from "../json.js";
import { retryWhileUnreachable } from "../db/connect.js";
import type { StoredError } from "./errorCodec.js";
import { RunContext, type ContextDeps, type WorkflowContext } from "./context.js";
import { finishWorkflow, loadSteps } from "./store.js";

export type WorkflowFunction<I, O> = (ctx: WorkflowContext, input: I) => Promise<O>;

export interface RunnerDeps extends ContextDeps {
  retryTimeoutMs: number;
}

export async function runWorkflow(
  deps: RunnerDeps,
  fn: WorkflowFunction<unknown, unknown>,
  workflowId: string,
  input: unknown,
  recovered: boolean,
  onContext: (ctx: RunContext) => void,
): Promise<void> {
  const steps = recovered ? await loadSteps(deps.sql, workflowId) : new Map();
  const ctx = new RunContext(deps, workflowId, steps, recovered);
  onContext(ctx);

  let status: "SUCCESS" | "ERROR";
  let outputJson: string | null = null;
  let error: StoredError | null = null;
  try {
    const output = await fn(ctx, input);
    await ctx.settle();
    if (ctx.endReason) throw ctx.endReason;
    if (output !== undefined) outputJson = encodeJson(output, `output of workflow "${workflowId}"`, deps.maxValueBytes);
    status = "SUCCESS";
  } catch (thrown) {
    await ctx.settle();
    const reason = ctx.endReason ?? thrown;
    if (isAbandon(reason)) {
      ctx.end(reason as Error);
      return;
    }
    status = "ERROR";
    error = deps.codec.encode(thrown);
  }
  ctx.end(new WorkflowFinishedError(workflowId, status));
  await retryWhileUnreachable("finish workflow", deps.retryTimeoutMs, () =>
    finishWorkflow(deps.sql, workflowId, status, outputJson, error),
  );
}

/** Outcomes that must not be recorded as the workflow's ERROR. */
function isAbandon(error: unknown): boolean {
  return (
    error instanceof WorkflowCancelledError ||
    error instanceof EngineClosedError ||
    error instanceof ConnectionError
  );
}
