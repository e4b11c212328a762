-- Settlement: refunds, and referral rewards held before release, reviewed, reversed or
-- clawed back.

-- A completed purchase may be refunded; the reason the payment side gave is kept.
-- (0004 built the table beside its predecessor, so its check got a generated name: found by
-- what it checks, not by that name.)
DO $$
DECLARE name text;
BEGIN
    SELECT conname INTO STRICT name FROM pg_constraint
     WHERE conrelid = 'purchases'::regclass AND contype = 'c'
       AND pg_get_constraintdef(oid) LIKE '%status%PENDING%';
    EXECUTE format('ALTER TABLE purchases DROP CONSTRAINT %I', name);
END $$;
ALTER TABLE purchases ADD CONSTRAINT purchases_status_check
    CHECK (status IN ('PENDING', 'COMPLETED', 'CANCELLED', 'EXPIRED', 'REFUNDED'));
ALTER TABLE purchases ADD COLUMN refund_reason text;

-- Whether a refund gives the code's use and budget back (the code's own setting).
ALTER TABLE promo_codes ADD COLUMN refund_returns_use boolean NOT NULL DEFAULT true;

-- The program: how long a reward is held, and a velocity limit. The cap per referrer was
-- "unlimited" by default; a program left at that default gets the new one (10).
ALTER TABLE referral_program
    ADD COLUMN reward_hold_seconds bigint NOT NULL DEFAULT 1209600
        CHECK (reward_hold_seconds BETWEEN 0 AND 31536000),
    ADD COLUMN max_rewards_per_referrer_per_day int NOT NULL DEFAULT 0
        CHECK (max_rewards_per_referrer_per_day >= 0),
    ALTER COLUMN max_rewards_per_referrer SET DEFAULT 10;
UPDATE referral_program SET max_rewards_per_referrer = 10 WHERE max_rewards_per_referrer = 0;

-- The referrer's per-day count for the velocity limit, taken with the total in one
-- conditional update; and a keyed hash of the client address the code was first given to
-- (never the address itself), for the same-address signal.
ALTER TABLE referral_codes
    ADD COLUMN rewards_day date,
    ADD COLUMN rewards_that_day int NOT NULL DEFAULT 0 CHECK (rewards_that_day >= 0),
    ADD COLUMN owner_address_hash bytea;

-- A referral records the keyed hash of the address the referee used the code from.
ALTER TABLE referrals DROP CONSTRAINT referrals_status_check;
ALTER TABLE referrals ADD CONSTRAINT referrals_status_check
    CHECK (status IN ('PENDING', 'COMPLETED', 'CANCELLED', 'EXPIRED', 'REFUNDED'));
ALTER TABLE referrals ADD COLUMN referee_address_hash bytea;

-- A reward's state: the one row per confirmed referral moves through these, each move a
-- conditional update on the state it leaves, so a refund racing the release (or two sweepers)
-- moves it once.
ALTER TABLE referral_rewards DROP CONSTRAINT referral_rewards_outcome_check;
ALTER TABLE referral_rewards DROP CONSTRAINT referral_rewards_check;
ALTER TABLE referral_rewards
    ADD CONSTRAINT referral_rewards_outcome_check CHECK (outcome IN (
        'PENDING', 'ISSUED', 'REVERSED', 'HELD_FOR_REVIEW', 'REJECTED', 'WITHHELD',
        'CLAWED_BACK', 'CLAWBACK_FAILED')),
    ADD CONSTRAINT referral_rewards_code_check CHECK (
        (code IS NOT NULL) = (outcome IN ('ISSUED', 'CLAWED_BACK', 'CLAWBACK_FAILED'))),
    ADD COLUMN referee_id uuid,
    ADD COLUMN release_at timestamptz,
    ADD COLUMN signal text CHECK (signal IN ('SAME_ADDRESS', 'MUTUAL_REFERRAL')),
    ADD COLUMN reviewed_by text,
    ADD COLUMN reviewed_at timestamptz,
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
UPDATE referral_rewards w SET referee_id = r.referee_id
    FROM referrals r WHERE r.purchase_id = w.purchase_id;

-- The sweeper's work: pending rewards whose hold has ended.
CREATE INDEX referral_rewards_due ON referral_rewards (release_at) WHERE outcome = 'PENDING';
CREATE INDEX referral_rewards_held ON referral_rewards (created_at)
    WHERE outcome = 'HELD_FOR_REVIEW';

-- referral_codes.rewards_issued now counts the rewards that hold one of the referrer's cap
-- slots (PENDING, HELD_FOR_REVIEW, ISSUED, CLAWBACK_FAILED): a reversal, a rejection, a
-- withholding at release or a clawback gives its slot back (loyalty_service/domain/referrals.py,
-- HOLDS_SLOT). What the user sees as issued is counted from referral_rewards.
COMMENT ON COLUMN referral_codes.rewards_issued IS
    'rewards holding a cap slot: PENDING, HELD_FOR_REVIEW, ISSUED, CLAWBACK_FAILED';
