-- Issue 15, the SQL side: a use and an apply in one round trip (server-side functions), a
-- code's counters split over slots so that a hot code is not one row lock, and purchases and
-- rejections partitioned by month so that their cost does not grow with history.

------------------------------------------------------------------------------------------
-- Counter slots. Every code has some: a capped code's remaining uses are split over up to 32
-- of them (uses_left), an unlimited code's 32 carry no limit (uses_left NULL). With fewer
-- slots than uses in flight, the uses queue on the slots as they did on the one row (pgbench,
-- 32 clients on one unlimited code: 8 slots ran at 0.5 of the spread rate). Each slot also
-- counts the uses taken from it and the discount they granted, so the admin's "uses taken"
-- and "discount granted" are sums over a handful of rows, never a count of purchases.
-- A purchase remembers its slot and gives back into it, so no slot counter goes negative.
------------------------------------------------------------------------------------------
CREATE TABLE promo_code_slots (
    code        text NOT NULL REFERENCES promo_codes (code),
    slot        smallint NOT NULL CHECK (slot >= 0),
    uses_left   int CHECK (uses_left >= 0),  -- NULL: the code has no cap
    taken       int NOT NULL DEFAULT 0 CHECK (taken >= 0),
    spent_minor bigint NOT NULL DEFAULT 0 CHECK (spent_minor >= 0),
    PRIMARY KEY (code, slot)
);

CREATE FUNCTION loyalty_slot_count(p_max_uses int, p_left int) RETURNS int
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_max_uses = 0 THEN 32 ELSE greatest(least(32, p_left), 1) END
$$;

-- Slots of codes as they are created, in one statement per insert statement.
CREATE FUNCTION loyalty_new_code_slots() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO promo_code_slots (code, slot, uses_left)
    SELECT n.code, s.slot,
           CASE WHEN n.max_uses = 0 THEN NULL
                ELSE n.max_uses / s.total + (s.slot < n.max_uses % s.total)::int END
      FROM new_codes n
     CROSS JOIN LATERAL (
           SELECT g::smallint AS slot, loyalty_slot_count(n.max_uses, n.max_uses) AS total
             FROM generate_series(0, loyalty_slot_count(n.max_uses, n.max_uses) - 1) g) s;
    RETURN NULL;
END
$$;

-- Existing codes: their uses taken (and discounts) sit in slot 0, which their live purchases
-- (slot NULL, read as 0) give back into; what is left is spread over the slots.
INSERT INTO promo_code_slots (code, slot, uses_left, taken, spent_minor)
SELECT c.code, s.slot,
       CASE WHEN c.max_uses = 0 THEN NULL
            ELSE greatest(c.max_uses - c.uses, 0) / s.total
                 + (s.slot < greatest(c.max_uses - c.uses, 0) % s.total)::int END,
       CASE WHEN s.slot = 0 THEN c.uses ELSE 0 END,
       CASE WHEN s.slot = 0 THEN c.budget_spent_minor ELSE 0 END
  FROM promo_codes c
 CROSS JOIN LATERAL (
       SELECT g::smallint AS slot, loyalty_slot_count(c.max_uses, c.max_uses - c.uses) AS total
         FROM generate_series(0, loyalty_slot_count(c.max_uses, c.max_uses - c.uses) - 1) g) s;

CREATE TRIGGER promo_codes_slots AFTER INSERT ON promo_codes
    REFERENCING NEW TABLE AS new_codes FOR EACH STATEMENT
    EXECUTE FUNCTION loyalty_new_code_slots();

-- The counter moved to the slots; budget_spent_minor stays the lock-and-limit of codes WITH a
-- budget only (money cannot be split over slots exactly), so only those serialise on their row.
ALTER TABLE promo_codes DROP COLUMN uses;

CREATE FUNCTION promo_code_uses(p_code text) RETURNS int
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(taken), 0)::int FROM promo_code_slots WHERE code = p_code
$$;

CREATE FUNCTION promo_code_spent(p_code text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(spent_minor), 0)::bigint FROM promo_code_slots WHERE code = p_code
$$;

-- The foreign keys from the hot tables to promo_codes and tariffs took a KEY SHARE lock on the
-- code's (and the tariff's) row with every use: on one hot code that is a multixact per use.
-- Codes and tariffs are never deleted, so the keys guarded nothing that happens.
ALTER TABLE user_code_uses DROP CONSTRAINT user_code_uses_code_fkey;

-- Rejection counts, split the same way: once a hot code runs out, every use of it is a
-- rejection adding 1 to the same (code, reason) row; 8 slots spread that lock. Readers sum.
ALTER TABLE rejection_counts ADD COLUMN slot smallint NOT NULL DEFAULT 0;
ALTER TABLE rejection_counts DROP CONSTRAINT rejection_counts_pkey;
ALTER TABLE rejection_counts ADD PRIMARY KEY (code, reason, slot);

------------------------------------------------------------------------------------------
-- Purchases and rejections, partitioned by month of created_at / occurred_at. The old tables
-- step aside, the rows move over, then the old tables go.
------------------------------------------------------------------------------------------
ALTER TABLE purchases RENAME TO purchases_old;
ALTER INDEX purchases_pkey RENAME TO purchases_old_pkey;
ALTER TABLE purchases_old RENAME CONSTRAINT purchases_user_id_request_id_key
    TO purchases_old_request_key;
DROP INDEX purchases_pending_age, purchases_by_code, purchases_by_user,
    purchases_by_code_created;
ALTER TABLE rejections RENAME TO rejections_old;
ALTER INDEX rejections_pkey RENAME TO rejections_old_pkey;
DROP INDEX rejections_by_code, rejections_by_reason, rejections_by_code_time, rejections_by_time;

CREATE TABLE purchases (
    purchase_id      uuid NOT NULL,
    user_id          uuid NOT NULL,
    code             text NOT NULL,
    tariff_id        text NOT NULL,
    base_minor       bigint NOT NULL,
    discount_minor   bigint NOT NULL,
    final_minor      bigint NOT NULL CHECK (final_minor >= 0),
    currency         text NOT NULL,
    status           text NOT NULL
        CHECK (status IN ('PENDING', 'COMPLETED', 'CANCELLED', 'EXPIRED')),
    request_id       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    duration         text NOT NULL DEFAULT 'ONCE'
        CHECK (duration IN ('ONCE', 'REPEATING', 'FOREVER')),
    duration_periods int NOT NULL DEFAULT 0,
    slot             smallint,  -- the counter slot the use came from (NULL: before slots)
    PRIMARY KEY (purchase_id, created_at)
) PARTITION BY RANGE (created_at);

-- A unique key of a partitioned table must contain the partition key, so the idempotency key
-- (user, request id) lives in a small table of its own, pointing at the purchase.
CREATE TABLE purchase_requests (
    user_id     uuid NOT NULL,
    request_id  text NOT NULL,
    purchase_id uuid NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (user_id, request_id)
);

CREATE TABLE rejections (
    rejection_id bigint NOT NULL DEFAULT nextval('rejections_rejection_id_seq'),
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    user_id      uuid,
    code         text NOT NULL,
    tariff_id    text NOT NULL,
    reason       text NOT NULL,
    PRIMARY KEY (rejection_id, occurred_at)
) PARTITION BY RANGE (occurred_at);
ALTER SEQUENCE rejections_rejection_id_seq OWNED BY rejections.rejection_id;

-- Rows outside every monthly partition (back-dated ones; or months ahead not made in time)
-- land here instead of failing the use.
CREATE TABLE purchases_default PARTITION OF purchases DEFAULT;
CREATE TABLE rejections_default PARTITION OF rejections DEFAULT;

-- Monthly partitions from p_from's month through p_until's (UTC), for both tables; returns
-- how many it created. Replicas may run it at once: the advisory lock queues them. A month
-- the default partition already holds rows of is left to the default (with a warning).
CREATE FUNCTION loyalty_ensure_partitions(p_from timestamptz, p_until timestamptz)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    v_month date := date_trunc('month', p_from AT TIME ZONE 'UTC')::date;
    v_last  date := date_trunc('month', p_until AT TIME ZONE 'UTC')::date;
    v_table text;
    v_name  text;
    v_made  int := 0;
BEGIN
    WHILE v_month <= v_last LOOP
        FOREACH v_table IN ARRAY ARRAY['purchases', 'rejections'] LOOP
            v_name := v_table || '_' || to_char(v_month, 'YYYY_MM');
            IF to_regclass(v_name) IS NULL THEN
                PERFORM pg_advisory_xact_lock(hashtextextended('loyalty_partitions', 15));
                IF to_regclass(v_name) IS NULL THEN
                    BEGIN
                        EXECUTE format(
                            'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                            v_name, v_table,
                            v_month::timestamp AT TIME ZONE 'UTC',
                            (v_month + interval '1 month')::timestamp AT TIME ZONE 'UTC');
                        v_made := v_made + 1;
                    EXCEPTION WHEN check_violation THEN
                        RAISE WARNING 'partition % left to the default partition: %',
                            v_name, SQLERRM;
                    END;
                END IF;
            END IF;
        END LOOP;
        v_month := (v_month + interval '1 month')::date;
    END LOOP;
    RETURN v_made;
END
$$;

-- Retention: drops the rejection partitions wholly before p_cutoff; the rows dropped.
-- Dropping a partition locks the parent table; a drop that cannot have its lock within a
-- second (a long query on rejections) is left for the next round rather than queueing every
-- rejection behind it.
CREATE FUNCTION loyalty_drop_rejection_partitions(p_cutoff timestamptz)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_name  text;
    v_rows  bigint;
    v_total bigint := 0;
BEGIN
    PERFORM set_config('lock_timeout', '1s', true);
    FOR v_name IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'rejections'::regclass AND c.relname ~ '^rejections_\d{4}_\d{2}$'
           AND (to_date(substr(c.relname, 12), 'YYYY_MM') + interval '1 month')
               <= p_cutoff AT TIME ZONE 'UTC'
         ORDER BY c.relname
    LOOP
        BEGIN
            EXECUTE format('SELECT count(*) FROM %I', v_name) INTO v_rows;
            EXECUTE format('DROP TABLE %I', v_name);
            v_total := v_total + v_rows;
        EXCEPTION WHEN lock_not_available THEN
            RAISE WARNING 'partition % not dropped this round: %', v_name, SQLERRM;
        END;
    END LOOP;
    RETURN v_total;
END
$$;

-- The months of the rows there are, and from last month to three months ahead.
DO $$
DECLARE
    v_month timestamptz;
BEGIN
    FOR v_month IN
        SELECT DISTINCT date_trunc('month', created_at, 'UTC') FROM purchases_old
        UNION
        SELECT DISTINCT date_trunc('month', occurred_at, 'UTC') FROM rejections_old
    LOOP
        PERFORM loyalty_ensure_partitions(v_month, v_month);
    END LOOP;
    PERFORM loyalty_ensure_partitions(now() - interval '1 month', now() + interval '3 months');
END
$$;

INSERT INTO purchases (purchase_id, user_id, code, tariff_id, base_minor, discount_minor,
                       final_minor, currency, status, request_id, created_at, updated_at,
                       duration, duration_periods, slot)
SELECT purchase_id, user_id, code, tariff_id, base_minor, discount_minor, final_minor, currency,
       status, request_id, created_at, updated_at, duration, duration_periods, NULL
  FROM purchases_old;
INSERT INTO purchase_requests (user_id, request_id, purchase_id, created_at)
SELECT user_id, request_id, purchase_id, created_at FROM purchases_old
 WHERE request_id IS NOT NULL;
INSERT INTO rejections (rejection_id, occurred_at, user_id, code, tariff_id, reason)
SELECT rejection_id, occurred_at, user_id, code, tariff_id, reason FROM rejections_old;

-- referrals.purchase_id referenced purchases(purchase_id), which is no longer unique on its
-- own; the referral is written in the same statement as its purchase (loyalty_use below).
DROP TABLE purchases_old CASCADE;
DROP TABLE rejections_old;

CREATE INDEX purchases_pending_age ON purchases (created_at) WHERE status = 'PENDING';
CREATE INDEX purchases_by_code ON purchases (code, status);
CREATE INDEX purchases_by_user ON purchases (user_id, created_at DESC, purchase_id);
CREATE INDEX purchases_by_code_created ON purchases (code, created_at);
CREATE INDEX rejections_by_code ON rejections (code, rejection_id DESC);
CREATE INDEX rejections_by_reason ON rejections (reason, rejection_id DESC);
CREATE INDEX rejections_by_code_time ON rejections (code, occurred_at);
CREATE INDEX rejections_by_time ON rejections (occurred_at);

------------------------------------------------------------------------------------------
-- The decision, the use and the apply as server-side functions: one round trip each.
-- loyalty_service/domain/eligibility.py and domain/referrals.py stay the reference; the
-- tests (tests/integration/test_loyalty_sql_rules.py) pin that both give the same reason.
------------------------------------------------------------------------------------------

-- domain/pricing.discount_amount: half-up percent, the cap, never below 0 nor above the base.
CREATE FUNCTION loyalty_discount(p_base bigint, p_kind text, p_value bigint, p_cap bigint)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT least(greatest(least(r.raw, coalesce(p_cap, r.raw)), 0), p_base)
      FROM (SELECT CASE p_kind WHEN 'PERCENT_OFF' THEN (p_base * p_value + 50) / 100
                               WHEN 'AMOUNT_OFF' THEN p_value
                               ELSE p_base - p_value END AS raw) r
$$;

CREATE TYPE loyalty_decision AS (
    reason              text,  -- NULL: the attempt may go ahead
    code                text,
    referrer_id         uuid,
    first_purchase_only boolean,
    max_uses            int,
    per_user_limit      int,
    budget_minor        bigint,
    tariff_id           text,
    tariff_name         text,
    tariff_price        bigint,
    tariff_currency     text,
    tariff_period       int,
    base_minor          bigint,
    discount_minor      bigint,
    final_minor         bigint,
    duration            text,
    duration_periods    int
);

-- Whether the user may apply the code to the tariff at p_now, in the order of
-- eligibility.rejection_reason (referral codes: referrals.rejection_reason), and the price.
CREATE FUNCTION loyalty_decide(p_code text, p_tariff text, p_user uuid, p_now timestamptz)
RETURNS loyalty_decision LANGUAGE plpgsql STABLE AS $$
DECLARE
    c        promo_codes%ROWTYPE;
    t        tariffs%ROWTYPE;
    d        loyalty_decision;
    v_status text;
    v_kind   text;
    v_value  bigint;
    v_prog   referral_program%ROWTYPE;
    v_live   boolean;
BEGIN
    SELECT * INTO c FROM promo_codes x WHERE x.code = p_code;
    IF NOT FOUND THEN
        d.reason := 'PROMO_CODE_NOT_FOUND';
        RETURN d;
    END IF;
    d.code := c.code;
    SELECT * INTO t FROM tariffs x WHERE x.tariff_id = p_tariff;
    SELECT coalesce(max(u.status), 'ACTIVE') INTO v_status FROM users u WHERE u.user_id = p_user;
    IF v_status = 'BLOCKED' THEN
        d.reason := 'USER_BLOCKED';
    ELSIF v_status = 'DELETED' THEN
        d.reason := 'USER_DELETED';
    ELSIF c.deactivated_at IS NOT NULL THEN
        d.reason := 'PROMO_CODE_INACTIVE';
    ELSIF c.referrer_id IS NOT NULL THEN
        SELECT * INTO v_prog FROM referral_program;
        IF NOT v_prog.enabled THEN
            d.reason := 'REFERRAL_PROGRAM_OFF';
        ELSIF t.tariff_id IS NULL THEN
            d.reason := 'TARIFF_NOT_FOUND';
        ELSIF c.referrer_id = p_user THEN
            d.reason := 'REFERRAL_SELF_USE';
        ELSIF EXISTS (SELECT 1 FROM referrals r WHERE r.referee_id = p_user
                        AND r.status IN ('PENDING', 'COMPLETED')) THEN
            d.reason := 'REFERRAL_ALREADY_REFERRED';
        ELSIF EXISTS (SELECT 1 FROM purchases p WHERE p.user_id = p_user
                        AND p.status IN ('PENDING', 'COMPLETED')) THEN
            d.reason := 'REFERRAL_NOT_FIRST_PURCHASE';
        END IF;
        v_kind := v_prog.referee_kind;
        v_value := v_prog.referee_value;
    ELSE
        IF c.starts_at IS NOT NULL AND p_now < c.starts_at THEN
            d.reason := 'PROMO_CODE_NOT_STARTED';
        ELSIF c.ends_at IS NOT NULL AND p_now >= c.ends_at THEN
            d.reason := 'PROMO_CODE_EXPIRED';
        ELSIF t.tariff_id IS NULL THEN
            d.reason := 'TARIFF_NOT_FOUND';
        ELSIF cardinality(c.tariff_ids) > 0 AND NOT t.tariff_id = ANY (c.tariff_ids) THEN
            d.reason := 'PROMO_CODE_NOT_FOR_TARIFF';
        ELSIF c.currency <> t.currency THEN
            d.reason := 'PROMO_CODE_NOT_FOR_TARIFF';
        ELSIF c.min_price_minor IS NOT NULL AND t.price_minor < c.min_price_minor THEN
            d.reason := 'PROMO_CODE_BELOW_MINIMUM';
        ELSIF NOT (c.all_users
                   OR EXISTS (SELECT 1 FROM promo_code_users a
                               WHERE a.code = c.code AND a.user_id = p_user)
                   OR EXISTS (SELECT 1 FROM promo_code_groups g
                                JOIN group_members m USING (group_id)
                               WHERE g.code = c.code AND m.user_id = p_user)) THEN
            d.reason := 'PROMO_CODE_NOT_FOR_USER';
        ELSIF c.first_purchase_only AND EXISTS (
                SELECT 1 FROM purchases p WHERE p.user_id = p_user
                   AND p.status IN ('PENDING', 'COMPLETED')) THEN
            d.reason := 'PROMO_CODE_FIRST_PURCHASE_ONLY';
        ELSIF c.max_uses > 0 AND NOT EXISTS (
                SELECT 1 FROM promo_code_slots s WHERE s.code = c.code AND s.uses_left > 0) THEN
            d.reason := 'PROMO_CODE_EXHAUSTED';
        ELSIF c.budget_minor IS NOT NULL
              AND loyalty_discount(t.price_minor, c.discount_kind, c.discount_value,
                                   c.max_discount_minor)
                  > greatest(c.budget_minor - c.budget_spent_minor, 0) THEN
            d.reason := 'PROMO_CODE_BUDGET_SPENT';
        ELSIF c.per_user_limit > 0 AND coalesce(
                (SELECT x.uses FROM user_code_uses x
                  WHERE x.code = c.code AND x.user_id = p_user), 0) >= c.per_user_limit THEN
            d.reason := 'PROMO_CODE_USER_LIMIT_REACHED';
        END IF;
        v_kind := c.discount_kind;
        v_value := c.discount_value;
    END IF;
    IF d.reason IS NOT NULL THEN
        RETURN d;
    END IF;
    d.referrer_id := c.referrer_id;
    d.first_purchase_only := c.first_purchase_only;
    d.max_uses := c.max_uses;
    d.per_user_limit := c.per_user_limit;
    d.budget_minor := c.budget_minor;
    d.tariff_id := t.tariff_id;
    d.tariff_name := t.name;
    d.tariff_price := t.price_minor;
    d.tariff_currency := t.currency;
    d.tariff_period := t.period_days;
    d.base_minor := t.price_minor;
    d.discount_minor := loyalty_discount(t.price_minor, v_kind, v_value, c.max_discount_minor);
    d.final_minor := t.price_minor - d.discount_minor;
    d.duration := c.duration;
    d.duration_periods := c.duration_periods;
    RETURN d;
END
$$;

-- A rejection row and its count; a failed write never hides the reason (it is logged).
CREATE FUNCTION loyalty_reject(p_user uuid, p_code text, p_tariff text, p_reason text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rejections (user_id, code, tariff_id, reason)
    VALUES (p_user, p_code, p_tariff, p_reason);
    INSERT INTO rejection_counts AS r (code, reason, slot, count)
    SELECT CASE WHEN EXISTS (SELECT 1 FROM promo_codes c WHERE c.code = p_code)
                THEN p_code ELSE '' END, p_reason, floor(random() * 8)::smallint, 1
    ON CONFLICT (code, reason, slot) DO UPDATE SET count = r.count + 1;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'rejection_not_recorded reason=% error=%', p_reason, SQLERRM;
END
$$;

-- Takes one use (and p_discount of the tally) from a slot of the code: a free slot in random
-- order (at most 32 rows to sort), skipping those other uses hold right now. When every slot
-- with uses left is held, it waits for one of them and takes it if a use is still there once
-- the holder is done (else it looks again), so the last use is found exactly. Returns the
-- slot, NULL when none is left.
-- The waiting is a conditional UPDATE of one chosen slot, not a locking scan: a scan keeps its
-- lock on every row it found empty until the transaction ends, so the waiters behind it would
-- queue on empty slots, one whole transaction after another.
CREATE FUNCTION loyalty_take_slot(p_code text, p_discount bigint) RETURNS smallint
LANGUAGE plpgsql AS $$
DECLARE
    v_slot smallint;
    v_wait smallint;
BEGIN
    LOOP
        UPDATE promo_code_slots s
           SET uses_left = s.uses_left - 1, taken = s.taken + 1,
               spent_minor = s.spent_minor + p_discount
         WHERE s.code = p_code
           AND s.slot = (SELECT f.slot FROM promo_code_slots f
                          WHERE f.code = p_code AND coalesce(f.uses_left > 0, true)
                          ORDER BY random()
                          LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING s.slot INTO v_slot;
        IF v_slot IS NOT NULL THEN
            RETURN v_slot;
        END IF;
        -- Every slot with uses left (as committed now) is held by a use in flight.
        SELECT f.slot INTO v_wait FROM promo_code_slots f
         WHERE f.code = p_code AND coalesce(f.uses_left > 0, true)
         ORDER BY random() LIMIT 1;
        IF v_wait IS NULL THEN
            RETURN NULL;
        END IF;
        BEGIN
            UPDATE promo_code_slots s
               SET uses_left = s.uses_left - 1, taken = s.taken + 1,
                   spent_minor = s.spent_minor + p_discount
             WHERE s.code = p_code AND s.slot = v_wait AND coalesce(s.uses_left > 0, true)
            RETURNING s.slot INTO v_slot;
        EXCEPTION WHEN deadlock_detected THEN
            v_slot := NULL;  -- the block's locks went with it; look again
        END;
        IF v_slot IS NOT NULL THEN
            RETURN v_slot;
        END IF;
    END LOOP;
END
$$;

-- Gives p_uses uses and p_discount back into the slot they came from (NULL: slot 0, where the
-- uses taken before slots existed were put).
CREATE FUNCTION loyalty_give_back(p_code text, p_slot smallint, p_uses int, p_discount bigint)
RETURNS void LANGUAGE sql AS $$
    UPDATE promo_code_slots s
       SET uses_left = s.uses_left + p_uses, taken = s.taken - p_uses,
           spent_minor = s.spent_minor - p_discount
     WHERE s.code = p_code AND s.slot = coalesce(p_slot, 0);
    UPDATE promo_codes c SET budget_spent_minor = c.budget_spent_minor - p_discount
     WHERE c.code = p_code AND c.budget_minor IS NOT NULL;
$$;

-- ApplyPromoCode: the decision and, when refused, its rejection record.
CREATE FUNCTION loyalty_apply(p_code text, p_tariff text, p_user uuid, p_now timestamptz)
RETURNS loyalty_decision LANGUAGE plpgsql AS $$
DECLARE
    d loyalty_decision := loyalty_decide(p_code, p_tariff, p_user, p_now);
BEGIN
    IF d.reason IS NOT NULL THEN
        PERFORM loyalty_reject(p_user, p_code, p_tariff, d.reason);
    END IF;
    RETURN d;
END
$$;

-- UsePromoCode: the earlier purchase of this request id, or the decision, then the code's
-- use, the user's use, the referral and the PENDING purchase, all or nothing; when refused,
-- the rejection record. Returns one row: reason NULL and the purchase (is_new: taken by
-- this call, not an earlier one of the same request id), or the reason.
-- The taking runs in a block that a refusal unwinds (raised with SQLSTATE LY001), so a use
-- taken before a later check fails is given back by the rollback, not by hand.
CREATE FUNCTION loyalty_use(
    p_code text, p_tariff text, p_user uuid, p_request text, p_purchase uuid,
    p_now timestamptz)
RETURNS TABLE (
    reason text, purchase_id uuid, user_id uuid, code text, tariff_id text, base_minor bigint,
    discount_minor bigint, final_minor bigint, currency text, status text, request_id text,
    created_at timestamptz, updated_at timestamptz, duration text, duration_periods int,
    is_new boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    d        loyalty_decision;
    v_slot   smallint;
    v_reason text;
BEGIN
    IF p_request IS NOT NULL THEN
        RETURN QUERY SELECT NULL::text, p.purchase_id, p.user_id, p.code, p.tariff_id,
                            p.base_minor, p.discount_minor, p.final_minor, p.currency,
                            p.status, p.request_id, p.created_at, p.updated_at, p.duration,
                            p.duration_periods, false
                       FROM purchase_requests r
                       JOIN purchases p ON p.purchase_id = r.purchase_id
                                       AND p.created_at = r.created_at
                      WHERE r.user_id = p_user AND r.request_id = p_request;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    d := loyalty_decide(p_code, p_tariff, p_user, p_now);
    v_reason := d.reason;
    IF v_reason IS NULL THEN
        BEGIN
            -- The request id first: a duplicate stops here, before any use is taken (a
            -- concurrent one with the same id is waited for, then answered with its purchase).
            IF p_request IS NOT NULL THEN
                INSERT INTO purchase_requests AS r (user_id, request_id, purchase_id, created_at)
                VALUES (p_user, p_request, p_purchase, now())
                ON CONFLICT (user_id, request_id) DO NOTHING;
                IF NOT FOUND THEN
                    RETURN QUERY SELECT NULL::text, p.purchase_id, p.user_id, p.code,
                                        p.tariff_id, p.base_minor, p.discount_minor,
                                        p.final_minor, p.currency, p.status, p.request_id,
                                        p.created_at, p.updated_at, p.duration,
                                        p.duration_periods, false
                                   FROM purchase_requests r
                                   JOIN purchases p ON p.purchase_id = r.purchase_id
                                                   AND p.created_at = r.created_at
                                  WHERE r.user_id = p_user AND r.request_id = p_request;
                    RETURN;
                END IF;
            END IF;
            -- First-purchase-only uses of one user queue, so two cannot both be first.
            IF d.first_purchase_only THEN
                PERFORM pg_advisory_xact_lock(hashtextextended(p_user::text, 19));
                IF EXISTS (SELECT 1 FROM purchases p WHERE p.user_id = p_user
                             AND p.status IN ('PENDING', 'COMPLETED')) THEN
                    RAISE SQLSTATE 'LY001' USING MESSAGE = 'PROMO_CODE_FIRST_PURCHASE_ONLY';
                END IF;
            END IF;
            -- Code counter before user counter: the lock order of cancel and expiry.
            v_slot := loyalty_take_slot(d.code, d.discount_minor);
            IF v_slot IS NULL THEN
                RAISE SQLSTATE 'LY001' USING MESSAGE = 'PROMO_CODE_EXHAUSTED';
            END IF;
            IF d.budget_minor IS NOT NULL THEN
                UPDATE promo_codes c SET budget_spent_minor = c.budget_spent_minor + d.discount_minor
                 WHERE c.code = d.code
                   AND c.budget_spent_minor + d.discount_minor <= c.budget_minor;
                IF NOT FOUND THEN
                    RAISE SQLSTATE 'LY001' USING MESSAGE = 'PROMO_CODE_BUDGET_SPENT';
                END IF;
            END IF;
            INSERT INTO user_code_uses AS x (code, user_id, uses) VALUES (d.code, p_user, 1)
            ON CONFLICT (code, user_id) DO UPDATE SET uses = x.uses + 1
             WHERE d.per_user_limit = 0 OR x.uses < d.per_user_limit;
            IF NOT FOUND THEN
                RAISE SQLSTATE 'LY001' USING MESSAGE = 'PROMO_CODE_USER_LIMIT_REACHED';
            END IF;
            IF d.referrer_id IS NOT NULL THEN
                -- Referred once: the unique index on the referee's live referral decides.
                INSERT INTO referrals AS f (purchase_id, referee_id, referrer_id, code, status)
                VALUES (p_purchase, p_user, d.referrer_id, d.code, 'PENDING')
                ON CONFLICT (referee_id) WHERE status IN ('PENDING', 'COMPLETED') DO NOTHING;
                IF NOT FOUND THEN
                    RAISE SQLSTATE 'LY001' USING MESSAGE = 'REFERRAL_ALREADY_REFERRED';
                END IF;
                IF EXISTS (SELECT 1 FROM purchases p WHERE p.user_id = p_user
                             AND p.status IN ('PENDING', 'COMPLETED')) THEN
                    RAISE SQLSTATE 'LY001' USING MESSAGE = 'REFERRAL_NOT_FIRST_PURCHASE';
                END IF;
            END IF;
            INSERT INTO purchases AS p (purchase_id, user_id, code, tariff_id, base_minor,
                                        discount_minor, final_minor, currency, status,
                                        request_id, duration, duration_periods, slot)
            VALUES (p_purchase, p_user, d.code, d.tariff_id, d.base_minor, d.discount_minor,
                    d.final_minor, d.tariff_currency, 'PENDING', p_request, d.duration,
                    d.duration_periods, v_slot)
            RETURNING p.purchase_id, p.user_id, p.code, p.tariff_id, p.base_minor,
                      p.discount_minor, p.final_minor, p.currency, p.status, p.request_id,
                      p.created_at, p.updated_at, p.duration, p.duration_periods
                 INTO purchase_id, user_id, code, tariff_id, base_minor, discount_minor,
                      final_minor, currency, status, request_id, created_at, updated_at,
                      duration, duration_periods;
            is_new := true;
            RETURN NEXT;
            RETURN;
        EXCEPTION WHEN SQLSTATE 'LY001' THEN
            v_reason := SQLERRM;
        END;
    END IF;
    PERFORM loyalty_reject(p_user, p_code, p_tariff, v_reason);
    reason := v_reason;
    is_new := false;
    RETURN NEXT;
END
$$;
