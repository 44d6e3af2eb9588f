-- Finishing a workflow in one statement: status, output or error, and a close for each
-- of its open streams, atomically. It was a client-side transaction (BEGIN … COMMIT over
-- four round trips); as one statement it cannot be left half-way by a dropped
-- connection, and a call that gives up can withdraw it before it runs.
-- Each statement in a plpgsql function takes a new snapshot: after FOR UPDATE has waited
-- out an append batch holding FOR KEY SHARE on the row, the heads below see that batch's
-- entries, so every close lands after them. Returns NULL when the workflow does not
-- exist, false when it had already left PENDING, true when it was finished here.
CREATE OR REPLACE FUNCTION finish_workflow(p_id text, p_status text, p_output text, p_error text)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  current_status text;
BEGIN
  SELECT status INTO current_status FROM workflow_status WHERE workflow_id = p_id FOR UPDATE;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  IF current_status <> 'PENDING' THEN
    RETURN false;
  END IF;
  UPDATE workflow_status
  SET status = p_status, output = p_output::jsonb, error = p_error::jsonb, updated_at = now()
  WHERE workflow_id = p_id;
  -- Each stream's last entry (keys by a skip scan of the primary key, then one backward
  -- probe each), and a close after it where it is not one already.
  INSERT INTO stream_entries (workflow_id, key, "offset", value, closed)
  SELECT p_id, k.key, last."offset" + 1, NULL, true
  FROM (
    WITH RECURSIVE keys(key) AS (
      (SELECT e.key FROM stream_entries e WHERE e.workflow_id = p_id ORDER BY e.key LIMIT 1)
      UNION ALL
      SELECT (SELECT e.key FROM stream_entries e
              WHERE e.workflow_id = p_id AND e.key > keys.key ORDER BY e.key LIMIT 1)
      FROM keys WHERE keys.key IS NOT NULL
    )
    SELECT keys.key FROM keys WHERE keys.key IS NOT NULL
  ) k
  CROSS JOIN LATERAL (
    SELECT e."offset", e.closed FROM stream_entries e
    WHERE e.workflow_id = p_id AND e.key = k.key
    ORDER BY e."offset" DESC LIMIT 1
  ) last
  WHERE NOT last.closed;
  RETURN true;
END
$$;
