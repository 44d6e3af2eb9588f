// Runs one workflow function to its end and records the outcome. A run that was
// cancelled, whose engine closed, or that lost Postgres leaves the workflow as it is in
// the table (CANCELLED, or PENDING for a later launch() to finish): an outage is never
// the workflow's outcome.
import { retrying } from "../db/retry.js";
import {
  ConnectionError, EngineClosedError, WorkflowCancelledError, WorkflowFinishedError,
} from "../errors.js";
import { encodeJson } from "../json.js";
import { RunContext, type ContextDeps, type Recovery, type WorkflowContext } from "./context.js";
import { finishWorkflow, loadSteps, loadStreams } from "./store.js";

export type WorkflowFunction<I, O> = (ctx: WorkflowContext, input: I) => Promise<O>;

/**
 * Resolves when the run is over: finished, or abandoned because it was cancelled or the
 * engine closed. Rejects with ConnectionError when Postgres stayed unreachable (the
 * workflow stays PENDING), so the engine can report it.
 */
export async function runWorkflow(
  deps: ContextDeps,
  fn: WorkflowFunction<unknown, unknown>,
  workflowId: string,
  input: unknown,
  recovered: boolean,
  controller: AbortController,
): Promise<void> {
  const recovery: Recovery | undefined = recovered
    ? await retrying("load workflow for recovery", deps.retryTimeoutMs, async () => ({
        steps: await loadSteps(deps.sql, workflowId),
        streams: await loadStreams(deps.sql, workflowId),
      }), controller.signal).catch((error: unknown) => abandoned(controller, error))
    : undefined;
  if (controller.signal.aborted) return;
  const ctx = new RunContext(deps, workflowId, recovery, controller);

  let status: "SUCCESS" | "ERROR";
  let outputJson: string | null = null;
  let errorJson: string | null = null;
  try {
    const output = await fn(ctx, input);
    await ctx.settle();
    if (ctx.endReason) throw ctx.endReason;
    if (output !== undefined) outputJson = encodeJson(output, `output of workflow "${workflowId}"`, deps.maxValueBytes);
    status = "SUCCESS";
  } catch (thrown) {
    await ctx.settle();
    const reason = ctx.endReason ?? thrown;
    if (isAbandon(reason)) return abandoned(controller, reason);
    status = "ERROR";
    errorJson = deps.codec.encode(thrown, `workflow "${workflowId}"`).json;
  }
  ctx.end(new WorkflowFinishedError(workflowId, status));
  await retrying("finish workflow", deps.retryTimeoutMs, () =>
    finishWorkflow(deps.sql, workflowId, status, outputJson, errorJson),
  ).catch((error: unknown) => abandoned(controller, error));
}

/** Ends the run without an outcome; an outage is reported (rejected), the rest is quiet. */
function abandoned(controller: AbortController, reason: unknown): undefined {
  if (!controller.signal.aborted) controller.abort(reason);
  if (reason instanceof ConnectionError) throw reason;
  if (isAbandon(reason)) return undefined;
  throw reason;
}

/** Outcomes that must not be recorded as the workflow's ERROR. */
function isAbandon(error: unknown): boolean {
  return (
    error instanceof WorkflowCancelledError ||
    error instanceof WorkflowFinishedError ||
    error instanceof EngineClosedError ||
    error instanceof ConnectionError
  );
}
