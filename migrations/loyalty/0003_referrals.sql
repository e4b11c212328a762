-- The referral program ("member gets member") and loyalty's own outbox of domain events.

-- The one program; a single row, written by admins.
CREATE TABLE referral_program (
    singleton                boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    enabled                  boolean NOT NULL DEFAULT false,
    referee_kind             text NOT NULL DEFAULT 'PERCENT_OFF'
        CHECK (referee_kind IN ('FIXED_PRICE', 'PERCENT_OFF', 'AMOUNT_OFF')),
    referee_value            bigint NOT NULL DEFAULT 10 CHECK (referee_value >= 0),
    reward_kind              text NOT NULL DEFAULT 'PERCENT_OFF'
        CHECK (reward_kind IN ('FIXED_PRICE', 'PERCENT_OFF', 'AMOUNT_OFF')),
    reward_value             bigint NOT NULL DEFAULT 10 CHECK (reward_value >= 0),
    reward_valid_days        int NOT NULL DEFAULT 30 CHECK (reward_valid_days > 0),
    max_rewards_per_referrer int NOT NULL DEFAULT 0 CHECK (max_rewards_per_referrer >= 0),
    updated_at               timestamptz NOT NULL DEFAULT now()
);
INSERT INTO referral_program DEFAULT VALUES;

-- A referral code is a promo code too (purchases reference it, uses are counted as for any
-- code), marked with its owner; its price comes from the program, not from the row.
ALTER TABLE promo_codes ADD COLUMN referrer_id uuid;

-- One personal code per user; the counter is the cap, taken by a conditional update.
CREATE TABLE referral_codes (
    user_id        uuid PRIMARY KEY,
    code           text NOT NULL UNIQUE REFERENCES promo_codes (code),
    rewards_issued int NOT NULL DEFAULT 0 CHECK (rewards_issued >= 0),
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- Every purchase made with a referral code.
CREATE TABLE referrals (
    purchase_id uuid PRIMARY KEY REFERENCES purchases (purchase_id),
    referee_id  uuid NOT NULL,
    referrer_id uuid NOT NULL,
    code        text NOT NULL REFERENCES promo_codes (code),
    status      text NOT NULL CHECK (status IN ('PENDING', 'COMPLETED', 'CANCELLED', 'EXPIRED')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (referee_id <> referrer_id)
);
-- A user is referred once, by one person: a cancelled or expired referral gives this back.
CREATE UNIQUE INDEX referrals_one_per_referee ON referrals (referee_id)
    WHERE status IN ('PENDING', 'COMPLETED');
CREATE INDEX referrals_by_referrer ON referrals (referrer_id, status);

-- The outcome of each confirmed referral: exactly one row per referred purchase, whatever
-- retries, concurrent confirms or crashes happen (the primary key sees to it).
CREATE TABLE referral_rewards (
    purchase_id uuid PRIMARY KEY REFERENCES referrals (purchase_id),
    referrer_id uuid NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('ISSUED', 'WITHHELD')),
    reason      text,  -- why it was withheld
    code        text REFERENCES promo_codes (code),  -- the reward code, when issued
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((outcome = 'ISSUED') = (code IS NOT NULL AND reason IS NULL))
);
CREATE INDEX referral_rewards_by_referrer ON referral_rewards (referrer_id);

-- Loyalty's events, written in the transaction of the change they report; the relay
-- publishes them to `loyalty.promo.events` and marks them sent after the broker's confirm.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    event_id    uuid NOT NULL UNIQUE,
    routing_key text NOT NULL,
    payload     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
