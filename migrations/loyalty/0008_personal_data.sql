-- Personal data (issue 28): the audit trail of admin calls, and what the user's own export
-- and the retention job need.

-- ExportMyData reads a user's rejected attempts; without this it would scan every month.
CREATE INDEX rejections_by_user ON rejections (user_id, occurred_at DESC);
-- The retention job forgets referral address hashes past their period.
CREATE INDEX referrals_by_created ON referrals (created_at)
    WHERE referee_address_hash IS NOT NULL;

-- The audit trail: one row per admin call or read of personal data (common/rpc/audit.py
-- decides which calls), written whether the call succeeded or not. Append-only: a trigger
-- refuses UPDATE and TRUNCATE, and DELETE unless the transaction first set
-- `audit.retention` to 'on', which only the retention job does (docs/privacy.md).
CREATE TABLE audit_events (
    id             bigserial PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    actor_id       text NOT NULL,        -- a user id, 'service:<id>', or '' (no valid token)
    method         text NOT NULL,        -- the full gRPC method name
    target         text NOT NULL DEFAULT '',
    outcome        text NOT NULL,        -- the gRPC status code name
    client_address text NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_by_time ON audit_events (at DESC, id DESC);
CREATE INDEX audit_events_by_actor ON audit_events (actor_id, at DESC, id DESC);
CREATE INDEX audit_events_by_target ON audit_events (target, at DESC, id DESC);

CREATE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('audit.retention', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
