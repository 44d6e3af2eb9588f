CREATE TABLE "step_outputs" (
	"workflow_id" text NOT NULL,
	"step_id" integer NOT NULL,
	"name" text NOT NULL,
	"output" jsonb,
	"error" jsonb,
	"stream_offsets" jsonb,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "step_outputs_workflow_id_step_id_pk" PRIMARY KEY("workflow_id","step_id")
);
--> statement-breakpoint
CREATE TABLE "stream_entries" (
	"workflow_id" text NOT NULL,
	"key" text NOT NULL,
	"offset" bigint NOT NULL,
	"value" jsonb,
	"closed" boolean DEFAULT false NOT NULL,
	CONSTRAINT "stream_entries_workflow_id_key_offset_pk" PRIMARY KEY("workflow_id","key","offset")
);
--> statement-breakpoint
CREATE TABLE "workflow_status" (
	"workflow_id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"status" text NOT NULL,
	"executor_id" text NOT NULL,
	"input" jsonb,
	"output" jsonb,
	"error" jsonb,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "workflow_status_pending_idx" ON "workflow_status" USING btree ("executor_id") WHERE "workflow_status"."status" = 'PENDING';--> statement-breakpoint
CREATE INDEX "workflow_status_created_idx" ON "workflow_status" USING btree ("created_at");