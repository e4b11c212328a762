-- Users, sessions, refresh tokens, the development signing key, and the event outbox.
CREATE TABLE users (
    user_id       uuid PRIMARY KEY,
    email         text NOT NULL,
    password_hash text NOT NULL,
    role          text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    status        text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'BLOCKED', 'DELETED')),
    -- Grows by one with each change reported to other services (UserEvent.version).
    version       bigint NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Case-insensitive uniqueness is the constraint itself, so racing registrations cannot both win.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE INDEX users_created_order ON users (created_at, user_id);

CREATE TABLE sessions (
    session_id uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (user_id),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX sessions_live_by_user ON sessions (user_id) WHERE revoked_at IS NULL;

-- Only hashes of refresh tokens are kept; a used (rotated) token stays to detect reuse.
CREATE TABLE refresh_tokens (
    token_hash text PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES sessions (session_id),
    created_at timestamptz NOT NULL DEFAULT now(),
    used_at    timestamptz
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- The key generated at first start when none is configured: one row, shared by replicas.
CREATE TABLE dev_signing_key (
    id          int PRIMARY KEY CHECK (id = 1),
    private_pem text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    event_id    uuid NOT NULL UNIQUE,
    user_id     uuid NOT NULL,
    routing_key text NOT NULL,  -- 'user.registered' | 'user.status_changed'
    payload     bytea NOT NULL, -- serialized loyalty.events.v1.UserEvent
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
