// A handle on one workflow, in this process or any other.
import type { Engine } from "../engine.js";
import { WorkflowCancelledError } from "../errors.js";
import type { WorkflowRow, WorkflowStatus } from "./store.js";

export class WorkflowHandle<O = unknown> {
  constructor(private readonly engine: Engine, readonly workflowId: string) {}

  /** Rejects with WorkflowNotFoundError if the workflow does not exist. */
  async getStatus(): Promise<WorkflowStatus> {
    return (await this.engine.getWorkflow(this.workflowId)).status;
  }

  /** The whole row: name, status, executor, output or error, timestamps. */
  getInfo(): Promise<WorkflowRow> {
    return this.engine.getWorkflow(this.workflowId);
  }

  /**
   * Waits for the workflow to finish (woken by NOTIFY), then resolves with its return
   * value, or rejects with its stored error (or WorkflowCancelledError).
   */
  async getResult(options: { signal?: AbortSignal } = {}): Promise<O> {
    const row = await this.engine.waitForWorkflow(this.workflowId, options.signal);
    if (row.status === "SUCCESS") return row.output as O;
    if (row.status === "CANCELLED") throw new WorkflowCancelledError(this.workflowId);
    throw this.engine.decodeError(row.error);
  }
}
