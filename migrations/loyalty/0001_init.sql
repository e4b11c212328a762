-- Tariffs, the users mirror, groups, promo codes with their audiences and counters,
-- purchases and rejections.
CREATE TABLE tariffs (
    tariff_id   text PRIMARY KEY,
    name        text NOT NULL,
    price_minor bigint NOT NULL CHECK (price_minor >= 0),
    currency    text NOT NULL DEFAULT 'RUB',
    period_days int NOT NULL CHECK (period_days > 0)
);
INSERT INTO tariffs (tariff_id, name, price_minor, currency, period_days) VALUES
    ('monthly', 'Monthly subscription', 29900, 'RUB', 30),
    ('yearly', 'Yearly subscription', 299000, 'RUB', 365);

-- What auth last told us about each user (filled from RabbitMQ); absent means ACTIVE.
CREATE TABLE users (
    user_id    uuid PRIMARY KEY,
    status     text NOT NULL CHECK (status IN ('ACTIVE', 'BLOCKED', 'DELETED')),
    version    bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE groups (
    group_id   uuid PRIMARY KEY,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX groups_name_key ON groups (lower(name));

CREATE TABLE group_members (
    group_id uuid NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
    user_id  uuid NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_by_user ON group_members (user_id);

CREATE TABLE promo_codes (
    code           text PRIMARY KEY,  -- normalised: upper case
    discount_kind  text NOT NULL CHECK (discount_kind IN ('FIXED_PRICE', 'PERCENT_OFF', 'AMOUNT_OFF')),
    discount_value bigint NOT NULL CHECK (discount_value >= 0),
    currency       text NOT NULL DEFAULT 'RUB',
    starts_at      timestamptz,
    ends_at        timestamptz,
    max_uses       int NOT NULL DEFAULT 0 CHECK (max_uses >= 0),  -- 0: unlimited
    uses           int NOT NULL DEFAULT 0 CHECK (uses >= 0),
    per_user_limit int NOT NULL DEFAULT 1 CHECK (per_user_limit >= 0),  -- 0: unlimited
    tariff_ids     text[] NOT NULL DEFAULT '{}',  -- empty: every tariff
    all_users      boolean NOT NULL DEFAULT false,
    description    text NOT NULL DEFAULT '',
    deactivated_at timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- The last line of defence: no statement can take more uses than there are.
    CHECK (max_uses = 0 OR uses <= max_uses)
);

CREATE TABLE promo_code_users (
    code    text NOT NULL REFERENCES promo_codes (code),
    user_id uuid NOT NULL,
    PRIMARY KEY (code, user_id)
);
CREATE INDEX promo_code_users_by_user ON promo_code_users (user_id);

CREATE TABLE promo_code_groups (
    code     text NOT NULL REFERENCES promo_codes (code),
    group_id uuid NOT NULL REFERENCES groups (group_id),
    PRIMARY KEY (code, group_id)
);
CREATE INDEX promo_code_groups_by_group ON promo_code_groups (group_id);

-- Uses held by one user of one code; the per-user limit is a conditional update of this row.
CREATE TABLE user_code_uses (
    code    text NOT NULL REFERENCES promo_codes (code),
    user_id uuid NOT NULL,
    uses    int NOT NULL DEFAULT 0 CHECK (uses >= 0),
    PRIMARY KEY (code, user_id)
);

CREATE TABLE purchases (
    purchase_id    uuid PRIMARY KEY,
    user_id        uuid NOT NULL,
    code           text NOT NULL REFERENCES promo_codes (code),
    tariff_id      text NOT NULL REFERENCES tariffs (tariff_id),
    base_minor     bigint NOT NULL,
    discount_minor bigint NOT NULL,
    final_minor    bigint NOT NULL CHECK (final_minor >= 0),
    currency       text NOT NULL,
    status         text NOT NULL CHECK (status IN ('PENDING', 'COMPLETED', 'CANCELLED', 'EXPIRED')),
    request_id     text,  -- the client's idempotency key; NULL when none was given
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, request_id)
);
CREATE INDEX purchases_pending_age ON purchases (created_at) WHERE status = 'PENDING';
CREATE INDEX purchases_by_code ON purchases (code, status);
CREATE INDEX purchases_by_user ON purchases (user_id, created_at DESC, purchase_id);

CREATE TABLE rejections (
    rejection_id bigserial PRIMARY KEY,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    user_id      uuid,
    code         text NOT NULL,  -- as typed (normalised), even when no such code exists
    tariff_id    text NOT NULL,
    reason       text NOT NULL
);
CREATE INDEX rejections_by_code ON rejections (code, rejection_id DESC);
CREATE INDEX rejections_by_reason ON rejections (reason, rejection_id DESC);
