-- Wake-ups for readers. Every statement that appends to streams sends one NOTIFY per
-- stream it touched (a statement-level trigger over the transition table), carrying the
-- workflow id, the key and the highest offset written: ids, never values. A workflow
-- leaving PENDING sends one too, so readers of streams it never wrote to are released.
-- The channel embeds the schema, so engines in different schemas never hear each other.
-- Functions and triggers are created in the first schema of search_path (the engine's).
CREATE OR REPLACE FUNCTION notify_stream_entries() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('pgtide.' || TG_TABLE_SCHEMA,
                    json_build_object('w', workflow_id, 'k', key, 'o', max("offset"))::text)
  FROM new_entries
  GROUP BY workflow_id, key;
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE OR REPLACE TRIGGER stream_entries_notify
AFTER INSERT ON stream_entries
REFERENCING NEW TABLE AS new_entries
FOR EACH STATEMENT EXECUTE FUNCTION notify_stream_entries();
--> statement-breakpoint
CREATE OR REPLACE FUNCTION notify_workflow_status() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('pgtide.' || TG_TABLE_SCHEMA,
                    json_build_object('w', NEW.workflow_id, 's', NEW.status)::text);
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE OR REPLACE TRIGGER workflow_status_notify
AFTER UPDATE OF status ON workflow_status
FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION notify_workflow_status();
