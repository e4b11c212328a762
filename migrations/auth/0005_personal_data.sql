-- Personal data (issue 28): deletion erases, and an audit trail of admin calls.

-- A deleted account keeps its id, status and version; its email and password hash are
-- erased (NULL), and only a DELETED row may lack them. What stays of the address is a keyed
-- hash (HMAC-SHA256 with AUTH_EMAIL_HASH_KEY of the canonical email), so re-registrations
-- of a deleted address can be counted without keeping the address; it blocks nothing.
ALTER TABLE users
    ALTER COLUMN email DROP NOT NULL,
    ALTER COLUMN password_hash DROP NOT NULL,
    ADD COLUMN email_hash bytea;
-- Accounts deleted before this migration are erased now; SQL has no key, so they keep no hash.
UPDATE users SET email = NULL, password_hash = NULL WHERE status = 'DELETED';
ALTER TABLE users ADD CONSTRAINT users_erased_only_when_deleted
    CHECK (status = 'DELETED' OR (email IS NOT NULL AND password_hash IS NOT NULL));
CREATE INDEX users_by_email_hash ON users (email_hash) WHERE email_hash IS NOT NULL;

-- The retention job removes sessions that ended (expired or revoked) long ago.
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

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
