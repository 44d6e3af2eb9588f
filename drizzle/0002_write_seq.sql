ALTER TABLE "stream_entries" ADD COLUMN "write_seq" integer;--> statement-breakpoint
ALTER TABLE "step_outputs" DROP COLUMN "stream_offsets";