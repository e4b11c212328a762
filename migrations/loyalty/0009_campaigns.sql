-- Campaigns (issue 24): many codes under one set of rules, one status and campaign-wide limits.
--
-- The rules stay denormalised on every code row (copied from the campaign when the code is
-- made; a campaign's rules never change after it is created), so loyalty_decide reads the one
-- code row it always read. What the campaign adds to a use is its status and, for a campaign
-- with a use limit or a budget, its counter slots (campaign_slots), taken inside loyalty_use.

CREATE TABLE campaigns (
    campaign_id         uuid PRIMARY KEY,
    name                text NOT NULL,
    description         text NOT NULL DEFAULT '',
    -- CAMPAIGN: made by CreateCampaign. CODE: the one-code campaign of a code made by
    -- CreatePromoCode, GeneratePromoCodes, an import or this migration (its limits stay on the
    -- code). REFERRAL: a personal referral code's (never listed, paused or ended).
    kind                text NOT NULL DEFAULT 'CODE' CHECK (kind IN ('CAMPAIGN', 'CODE', 'REFERRAL')),
    status              text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'PAUSED', 'ENDED')),
    -- The rules, as on promo_codes (copied to each code it makes).
    discount_kind       text NOT NULL CHECK (discount_kind IN ('FIXED_PRICE', 'PERCENT_OFF', 'AMOUNT_OFF')),
    discount_value      bigint NOT NULL CHECK (discount_value >= 0),
    currency            text NOT NULL DEFAULT 'RUB',
    starts_at           timestamptz,
    ends_at             timestamptz,
    per_user_limit      int NOT NULL DEFAULT 1 CHECK (per_user_limit >= 0),
    tariff_ids          text[] NOT NULL DEFAULT '{}',
    all_users           boolean NOT NULL DEFAULT false,
    audience_user_ids   uuid[] NOT NULL DEFAULT '{}',
    audience_group_ids  uuid[] NOT NULL DEFAULT '{}',
    duration            text NOT NULL DEFAULT 'ONCE' CHECK (duration IN ('ONCE', 'REPEATING', 'FOREVER')),
    duration_periods    int NOT NULL DEFAULT 0 CHECK (duration_periods >= 0),
    max_discount_minor  bigint CHECK (max_discount_minor >= 0),
    first_purchase_only boolean NOT NULL DEFAULT false,
    min_price_minor     bigint CHECK (min_price_minor >= 0),
    refund_returns_use  boolean NOT NULL DEFAULT true,
    -- Campaign-wide limits over all its codes (0 / NULL: none); kept in campaign_slots.
    max_uses            int NOT NULL DEFAULT 0 CHECK (max_uses >= 0),
    budget_minor        bigint CHECK (budget_minor >= 0),
    created_by          text NOT NULL DEFAULT '',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX campaigns_by_created ON campaigns (created_at DESC, campaign_id DESC);

-- A limited campaign's counters, split like promo_code_slots so that 5,000 codes sharing one
-- budget do not queue on one row: each slot holds part of the uses and of the money left.
-- uses_left and budget_left_minor never go below zero (a use takes from a slot that has
-- enough, or from several at once when none has: loyalty_take_campaign_slot). taken and
-- spent_minor are tallies whose sums are the campaign's; a give-back lands in any slot, so a
-- single slot's tally may go below zero while the sums stay exact.
CREATE TABLE campaign_slots (
    campaign_id       uuid NOT NULL REFERENCES campaigns (campaign_id),
    slot              smallint NOT NULL CHECK (slot >= 0),
    uses_left         int CHECK (uses_left >= 0),  -- NULL: no use limit
    budget_left_minor bigint CHECK (budget_left_minor >= 0),  -- NULL: no budget
    taken             int NOT NULL DEFAULT 0,
    spent_minor       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, slot)
);

-- Every change of a campaign's or a code's state: who (the admin's user id) and when.
CREATE TABLE campaign_audit (
    audit_id    bigserial PRIMARY KEY,
    campaign_id uuid NOT NULL REFERENCES campaigns (campaign_id),
    action      text NOT NULL,
    code        text NOT NULL DEFAULT '',
    detail      text NOT NULL DEFAULT '',
    actor_id    text NOT NULL DEFAULT '',
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX campaign_audit_by_campaign ON campaign_audit (campaign_id, audit_id);

-- Every code belongs to a campaign. Existing codes: a one-code campaign each, holding the
-- code's rules; its limits, counters, purchases and rejections stay where they were (on the
-- code), so every figure of the code's report is what it was.
ALTER TABLE promo_codes ADD COLUMN campaign_id uuid;
UPDATE promo_codes SET campaign_id = gen_random_uuid();
INSERT INTO campaigns (campaign_id, name, description, kind, discount_kind, discount_value,
                       currency, starts_at, ends_at, per_user_limit, tariff_ids, all_users,
                       duration, duration_periods, max_discount_minor, first_purchase_only,
                       min_price_minor, refund_returns_use, created_by, created_at)
SELECT c.campaign_id, c.code, c.description,
       CASE WHEN c.referrer_id IS NULL THEN 'CODE' ELSE 'REFERRAL' END,
       c.discount_kind, c.discount_value, c.currency, c.starts_at, c.ends_at,
       c.per_user_limit, c.tariff_ids, c.all_users, c.duration, c.duration_periods,
       c.max_discount_minor, c.first_purchase_only, c.min_price_minor, c.refund_returns_use,
       'migration', c.created_at
  FROM promo_codes c;
INSERT INTO campaign_audit (campaign_id, action, code, actor_id, at)
SELECT c.campaign_id, 'MIGRATED', c.code, 'migration', now() FROM promo_codes c;
ALTER TABLE promo_codes ADD CONSTRAINT promo_codes_campaign_fkey
    FOREIGN KEY (campaign_id) REFERENCES campaigns (campaign_id);
CREATE INDEX promo_codes_by_campaign ON promo_codes (campaign_id, code);

-- Codes inserted with no campaign (CreatePromoCode, GeneratePromoCodes, an import, a referral
-- or reward code, an older replica mid-rollout) get one: one per insert statement and set of
-- rules, so a generated batch is one campaign. The file loyalty_new_code_campaign.sql owns the
-- body; this is its first version, needed by the trigger below.
CREATE FUNCTION loyalty_new_code_campaign() RETURNS trigger
LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER promo_codes_campaign AFTER INSERT ON promo_codes
    REFERENCING NEW TABLE AS new_codes FOR EACH STATEMENT
    EXECUTE FUNCTION loyalty_new_code_campaign();

-- The decision carries the code's campaign, and whether it has campaign-wide limits to take.
ALTER TYPE loyalty_decision ADD ATTRIBUTE campaign_id uuid;
ALTER TYPE loyalty_decision ADD ATTRIBUTE campaign_limited boolean;
