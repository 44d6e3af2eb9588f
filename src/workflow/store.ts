// The SQL that reads and writes workflow rows and step outputs.
import type { Sql } from "../db/connect.js";
import { whole } from "../db/rows.js";
import { WorkflowNotFoundError } from "../errors.js";
import type { StoredError } from "./errorCodec.js";

export type WorkflowStatus = "PENDING" | "SUCCESS" | "ERROR" | "CANCELLED";

export interface WorkflowRow {
  workflowId: string;
  name: string;
  status: WorkflowStatus;
  executorId: string;
  /** undefined when the workflow returned nothing */
  output: unknown;
  error: StoredError | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface StepRow {
  name: string;
  output: unknown;
  error: StoredError | null;
}

/** What a recovered run needs to know of one of its streams. */
export interface StreamState {
  /** The offset the next entry takes. */
  nextOffset: number;
  /** The stream's last entry is its close. */
  closed: boolean;
  /** How many of the workflow code's writes (and closes) of this stream are stored. */
  storedWrites: number;
}

/** Inserts a PENDING workflow; returns false when the id already exists. */
export async function insertWorkflow(
  sql: Sql, workflowId: string, name: string, executorId: string, inputJson: string | null,
): Promise<{ created: true } | { created: false; existing: { name: string; status: WorkflowStatus; executorId: string } }> {
  const rows = whole(await sql`
    insert into workflow_status (workflow_id, name, status, executor_id, input)
    values (${workflowId}, ${name}, 'PENDING', ${executorId}, ${inputJson}::text::jsonb)
    on conflict (workflow_id) do nothing
    returning workflow_id`);
  if (rows.length > 0) return { created: true };
  const [existing] = whole(await sql`select name, status, executor_id from workflow_status where workflow_id = ${workflowId}`);
  if (!existing) throw new WorkflowNotFoundError(workflowId); // deleted in between: not ours to run
  return {
    created: false,
    existing: { name: existing.name as string, status: existing.status as WorkflowStatus, executorId: existing.executor_id as string },
  };
}

export async function getWorkflow(sql: Sql, workflowId: string): Promise<WorkflowRow> {
  const [row] = whole(await sql`
    select workflow_id, name, status, executor_id, output, output is null as no_output, error,
           created_at, updated_at
    from workflow_status where workflow_id = ${workflowId}`);
  if (!row) throw new WorkflowNotFoundError(workflowId);
  return toWorkflowRow(row);
}

/** Those of `workflowIds` that have left PENDING, with their status. */
export async function finishedAmong(sql: Sql, workflowIds: string[]): Promise<Map<string, WorkflowStatus>> {
  const rows = whole(await sql`
    select workflow_id, status from workflow_status
    where workflow_id = any(${sql.array(workflowIds, 25)}::text[]) and status <> 'PENDING'`); // 25: text
  return new Map(rows.map((r) => [r.workflow_id as string, r.status as WorkflowStatus]));
}

/** The workflow's status alone (a run asks before each step it executes). */
export async function statusOf(sql: Sql, workflowId: string): Promise<WorkflowStatus> {
  const [row] = whole(await sql`select status from workflow_status where workflow_id = ${workflowId}`);
  if (!row) throw new WorkflowNotFoundError(workflowId);
  return row.status as WorkflowStatus;
}

export async function listWorkflows(
  sql: Sql, filter: { status?: WorkflowStatus; name?: string; limit: number },
): Promise<WorkflowRow[]> {
  const rows = whole(await sql`
    select workflow_id, name, status, executor_id, output, output is null as no_output, error,
           created_at, updated_at
    from workflow_status
    where (${filter.status ?? null}::text is null or status = ${filter.status ?? null})
      and (${filter.name ?? null}::text is null or name = ${filter.name ?? null})
    order by created_at desc, workflow_id
    limit ${filter.limit}`);
  return rows.map(toWorkflowRow);
}

function toWorkflowRow(row: Record<string, unknown>): WorkflowRow {
  return {
    workflowId: row.workflow_id as string,
    name: row.name as string,
    status: row.status as WorkflowStatus,
    executorId: row.executor_id as string,
    output: row.no_output ? undefined : row.output,
    error: (row.error as StoredError | null) ?? null,
    createdAt: row.created_at as Date,
    updatedAt: row.updated_at as Date,
  };
}

export async function pendingWorkflows(sql: Sql, executorId: string) {
  const rows = whole(await sql`
    select workflow_id, name, input, input is null as no_input
    from workflow_status where executor_id = ${executorId} and status = 'PENDING'
    order by created_at`);
  return rows.map((r) => ({
    workflowId: r.workflow_id as string,
    name: r.name as string,
    input: r.no_input ? undefined : (r.input as unknown),
  }));
}

/** Every recorded step of a workflow, or only `stepId`'s. */
export async function loadSteps(sql: Sql, workflowId: string, stepId?: number): Promise<Map<number, StepRow>> {
  const rows = whole(await sql`
    select step_id, name, output, output is null as no_output, error
    from step_outputs
    where workflow_id = ${workflowId} and (${stepId ?? null}::int is null or step_id = ${stepId ?? null})`);
  return new Map(rows.map((r) => [r.step_id as number, {
    name: r.name as string,
    output: r.no_output ? undefined : r.output,
    error: (r.error as StoredError | null) ?? null,
  }]));
}

/**
 * Stores a step's outcome while the workflow is still PENDING. Returns false when it
 * was not stored: the workflow was cancelled or finished, or the step already had one.
 */
export async function saveStep(
  sql: Sql, workflowId: string, stepId: number, name: string,
  outputJson: string | null, errorJson: string | null,
): Promise<boolean> {
  const rows = whole(await sql`
    insert into step_outputs (workflow_id, step_id, name, output, error)
    select ${workflowId}, ${stepId}, ${name}, ${outputJson}::text::jsonb, ${errorJson}::text::jsonb
    where exists (select 1 from workflow_status where workflow_id = ${workflowId} and status = 'PENDING')
    on conflict do nothing
    returning step_id`);
  return rows.length > 0;
}

/**
 * The last entry of each of the workflow's streams. Keys are found by a skip scan of
 * the primary key, and each last entry by one backward index probe, so the cost is per
 * stream, never per entry.
 */
function streamHeads(sql: Sql, workflowId: string) {
  return sql`
    with recursive keys(key) as (
      (select key from stream_entries where workflow_id = ${workflowId} order by key limit 1)
      union all
      select (select e.key from stream_entries e
              where e.workflow_id = ${workflowId} and e.key > keys.key order by e.key limit 1)
      from keys where keys.key is not null
    )
    select k.key, last."offset", last.closed
    from keys k
    cross join lateral (
      select "offset", closed from stream_entries e
      where e.workflow_id = ${workflowId} and e.key = k.key
      order by "offset" desc limit 1
    ) last
    where k.key is not null`;
}

/**
 * Each stream's state, for a recovered run: its head, and how many of the workflow
 * code's writes it holds. Those commit in the order they were made (one writer batch at
 * a time, and a run stops at its first lost write), so the count is the last stored
 * write_seq + 1, found by scanning back from the head past the entries written inside
 * steps since then.
 */
export async function loadStreams(sql: Sql, workflowId: string): Promise<Map<string, StreamState>> {
  const rows = whole(await sql`
    select h.key, h."offset", h.closed, w.write_seq
    from (${streamHeads(sql, workflowId)}) h
    left join lateral (
      select write_seq from stream_entries e
      where e.workflow_id = ${workflowId} and e.key = h.key and e.write_seq is not null
      order by "offset" desc limit 1
    ) w on true`);
  return new Map(rows.map((r) => [r.key as string, {
    nextOffset: (r.offset as number) + 1,
    closed: r.closed as boolean,
    storedWrites: r.write_seq === null ? 0 : (r.write_seq as number) + 1,
  }]));
}

/**
 * Moves a PENDING workflow to a terminal status and, in the same statement, closes each
 * of its streams that is still open (drizzle/0005_finish_function.sql). Its FOR UPDATE
 * waits out any append batch holding FOR KEY SHARE on the row, so the closes land after
 * every committed entry, and later batches see the new status and are refused.
 * Returns false if the workflow had already left PENDING.
 */
export async function finishWorkflow(
  sql: Sql, workflowId: string, status: Exclude<WorkflowStatus, "PENDING">,
  outputJson: string | null, errorJson: string | null,
): Promise<boolean> {
  const [row] = whole(await sql`select finish_workflow(${workflowId}, ${status}, ${outputJson}, ${errorJson}) as finished`);
  if (row?.finished === null || row?.finished === undefined) throw new WorkflowNotFoundError(workflowId);
  return row.finished as boolean;
}
