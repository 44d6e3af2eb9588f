-- A notification now says when its statement closed the stream ('c': 1). A reader that
-- waits for an offset past the close (it resumed from the end, or asked for
-- Number.MAX_SAFE_INTEGER) is woken by it, re-reads, and finds the close; before, only
-- the workflow's end released it.
CREATE OR REPLACE FUNCTION notify_stream_entries() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('pgtide.' || TG_TABLE_SCHEMA,
                    CASE WHEN bool_or(closed)
                      THEN json_build_object('w', workflow_id, 'k', key, 'o', max("offset"), 'c', 1)
                      ELSE json_build_object('w', workflow_id, 'k', key, 'o', max("offset"))
                    END::text)
  FROM new_entries
  GROUP BY workflow_id, key;
  RETURN NULL;
END
$$;
