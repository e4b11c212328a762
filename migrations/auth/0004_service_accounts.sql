-- Service accounts (non-human callers such as billing) and their client secrets.
CREATE TABLE service_accounts (
    account_id uuid PRIMARY KEY,
    name       text NOT NULL,
    scopes     text[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Kept, not removed: the revocation keeper rebuilds Redis's list from recent deletions.
    deleted_at timestamptz
);
CREATE INDEX service_accounts_live_order ON service_accounts (created_at, account_id)
    WHERE deleted_at IS NULL;
CREATE INDEX service_accounts_recently_deleted ON service_accounts (deleted_at)
    WHERE deleted_at IS NOT NULL;

-- Only the SHA-256 of each secret (256 random bits: a fast hash is enough, see docs/auth.md).
-- A rotation gives the previous secrets an expiry (the overlap) and adds a new one with none.
CREATE TABLE service_account_secrets (
    secret_hash text PRIMARY KEY,
    account_id  uuid NOT NULL REFERENCES service_accounts (account_id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz
);
CREATE INDEX service_account_secrets_account ON service_account_secrets (account_id);
