// The tables, managed by drizzle-kit. They are declared without a schema: pgtide sets
// `search_path` to the engine's schema on every connection, so one set of migrations
// serves any schema name and two engines in one database never see each other.
import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
} from "drizzle-orm/pg-core";

export const workflowStatus = pgTable(
  "workflow_status",
  {
    workflowId: text("workflow_id").primaryKey(),
    name: text("name").notNull(),
    /** PENDING | SUCCESS | ERROR | CANCELLED */
    status: text("status").notNull(),
    executorId: text("executor_id").notNull(),
    input: jsonb("input"),
    output: jsonb("output"),
    error: jsonb("error"),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    // Recovery asks for one executor's PENDING workflows.
    index("workflow_status_pending_idx")
      .on(t.executorId)
      .where(sql`${t.status} = 'PENDING'`),
    index("workflow_status_created_idx").on(t.createdAt),
  ],
);

export const stepOutputs = pgTable(
  "step_outputs",
  {
    workflowId: text("workflow_id").notNull(),
    /** Position of the step in the workflow's sequence of steps: 0, 1, 2, … */
    stepId: integer("step_id").notNull(),
    name: text("name").notNull(),
    output: jsonb("output"),
    error: jsonb("error"),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.workflowId, t.stepId] })],
);

export const streamEntries = pgTable(
  "stream_entries",
  {
    workflowId: text("workflow_id").notNull(),
    key: text("key").notNull(),
    offset: bigint("offset", { mode: "number" }).notNull(),
    /** The value as JSON; NULL on the close entry. */
    value: jsonb("value"),
    closed: boolean("closed").notNull().default(false),
    /**
     * For a write made by workflow code (not inside a step): its position among the
     * workflow code's writes and closes of this stream, 0, 1, 2, … A recovered run skips
     * the writes whose position is already stored. NULL for writes made inside a step
     * (at-least-once) and for the closes a finishing workflow adds.
     */
    writeSeq: integer("write_seq"),
  },
  // The primary key serves every read: `workflow_id = $1 AND key = $2 AND offset >= $3
  // ORDER BY offset LIMIT $4` is a range scan, whatever the stream's length.
  (t) => [primaryKey({ columns: [t.workflowId, t.key, t.offset] })],
);
