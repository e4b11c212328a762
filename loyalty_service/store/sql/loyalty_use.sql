-- UsePromoCode: the earlier purchase of this request id, or the decision, then the code's
-- use, the user's use, the referral and the PENDING purchase, all or nothing; when refused,
-- the rejection record. Returns one row: reason NULL and the purchase (is_new: taken by
-- this call, not an earlier one of the same request id), or the reason.
-- The taking runs in a block that a refusal unwinds (raised with SQLSTATE LY001), so a use
-- taken before a later check fails is given back by the rollback, not by hand.
-- p_referee_address: the keyed hash of the caller's address, kept on a referral it makes (the
-- same-address signal of its settlement); NULL when unknown.
-- p_guess_*: the caller's guessing-throttle buckets (loyalty_guess_*.sql) and the reasons that
-- count as a guess; NULL: not throttled. A caller short of a token is refused before the
-- look-up (TOO_MANY_PROMO_ATTEMPTS, no rejection recorded); a miss spends one, and a miss
-- that finds the buckets emptied meanwhile by its own concurrent misses is refused the same.
CREATE OR REPLACE FUNCTION loyalty_use(
    p_code text, p_tariff text, p_user uuid, p_request text, p_purchase uuid,
    p_now timestamptz, p_referee_address bytea DEFAULT NULL,
    p_guess_buckets text[] DEFAULT NULL, p_guess_caps float8[] DEFAULT NULL,
    p_guess_rates float8[] DEFAULT NULL, p_guess_misses text[] DEFAULT NULL)
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
    v_cslot  smallint;
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
    -- A throttled caller still gets the purchase its request id made (above), nothing else.
    IF p_guess_buckets IS NOT NULL
       AND loyalty_guess_wait(p_guess_buckets, p_guess_caps, p_guess_rates) > 0 THEN
        reason := 'TOO_MANY_PROMO_ATTEMPTS';
        is_new := false;
        RETURN NEXT;
        RETURN;
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
            -- The campaign's use and money, after the code's (the lock order of give-backs).
            IF d.campaign_limited THEN
                v_cslot := loyalty_take_campaign_slot(d.campaign_id, d.discount_minor);
                IF v_cslot = -1 THEN
                    RAISE SQLSTATE 'LY001' USING MESSAGE = 'PROMO_CODE_EXHAUSTED';
                ELSIF v_cslot = -2 THEN
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
                INSERT INTO referrals AS f (purchase_id, referee_id, referrer_id, code, status,
                                            referee_address_hash)
                VALUES (p_purchase, p_user, d.referrer_id, d.code, 'PENDING', p_referee_address)
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
    -- Nested, not AND: "NULL AND f()" calls f() (without a throttle, ANY (NULL) is NULL).
    IF v_reason = ANY (p_guess_misses) THEN
        IF loyalty_guess_spend(p_guess_buckets, p_guess_caps, p_guess_rates) > 0 THEN
            reason := 'TOO_MANY_PROMO_ATTEMPTS';
            is_new := false;
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;
    PERFORM loyalty_reject(p_user, p_code, p_tariff, v_reason);
    reason := v_reason;
    is_new := false;
    RETURN NEXT;
END
$$;
