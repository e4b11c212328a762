-- The audit trail is append-only (migration 0005 made the triggers): UPDATE and TRUNCATE are
-- refused, and DELETE too unless the transaction set audit.retention to 'on', which only the
-- retention job does (auth_service/jobs/retention.py).
CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('audit.retention', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
