-- Whether the user may apply the code to the tariff at p_now, in the order of
-- eligibility.rejection_reason (referral codes: referrals.rejection_reason), and the price.
-- Its return type loyalty_decision is schema (migration 0004): a field added there is a
-- versioned migration (ALTER TYPE ... ADD ATTRIBUTE), then the bodies here fill it.
CREATE OR REPLACE FUNCTION loyalty_decide(p_code text, p_tariff text, p_user uuid, p_now timestamptz)
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
    k        campaigns%ROWTYPE;
    v_cuses  bigint;
    v_cmoney numeric;
BEGIN
    SELECT * INTO c FROM promo_codes x WHERE x.code = p_code;
    IF NOT FOUND THEN
        d.reason := 'PROMO_CODE_NOT_FOUND';
        RETURN d;
    END IF;
    d.code := c.code;
    SELECT * INTO k FROM campaigns x WHERE x.campaign_id = c.campaign_id;
    SELECT * INTO t FROM tariffs x WHERE x.tariff_id = p_tariff;
    SELECT coalesce(max(u.status), 'ACTIVE') INTO v_status FROM users u WHERE u.user_id = p_user;
    IF v_status = 'BLOCKED' THEN
        d.reason := 'USER_BLOCKED';
    ELSIF v_status = 'DELETED' THEN
        d.reason := 'USER_DELETED';
    -- Outside a code's audience a user learns nothing else about it (not whether it is
    -- live, nor its tariffs or dates): the one answer a guess spends a token on.
    ELSIF c.referrer_id IS NULL AND NOT (c.all_users
                   OR EXISTS (SELECT 1 FROM promo_code_users a
                               WHERE a.code = c.code AND a.user_id = p_user)
                   OR EXISTS (SELECT 1 FROM promo_code_groups g
                                JOIN group_members m USING (group_id)
                               WHERE g.code = c.code AND m.user_id = p_user)) THEN
        d.reason := 'PROMO_CODE_NOT_FOR_USER';
    ELSIF c.deactivated_at IS NOT NULL OR k.status = 'ENDED' THEN
        d.reason := 'PROMO_CODE_INACTIVE';
    ELSIF c.referrer_id IS NOT NULL THEN
        SELECT * INTO v_prog FROM referral_program;
        IF EXISTS (SELECT 1 FROM users o WHERE o.user_id = c.referrer_id
                     AND o.status IN ('BLOCKED', 'DELETED')) THEN
            d.reason := 'REFERRAL_CODE_INACTIVE';
        ELSIF NOT v_prog.enabled THEN
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
        -- A limited campaign's uses and money left: sums over its slots (NULL: no limit).
        SELECT sum(s.uses_left), sum(s.budget_left_minor) INTO v_cuses, v_cmoney
          FROM campaign_slots s WHERE s.campaign_id = c.campaign_id;
        IF k.status = 'PAUSED' THEN
            d.reason := 'PROMO_CODE_CAMPAIGN_PAUSED';
        ELSIF c.starts_at IS NOT NULL AND p_now < c.starts_at THEN
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
        ELSIF c.first_purchase_only AND EXISTS (
                SELECT 1 FROM purchases p WHERE p.user_id = p_user
                   AND p.status IN ('PENDING', 'COMPLETED')) THEN
            d.reason := 'PROMO_CODE_FIRST_PURCHASE_ONLY';
        ELSIF c.max_uses > 0 AND NOT EXISTS (
                SELECT 1 FROM promo_code_slots s WHERE s.code = c.code AND s.uses_left > 0) THEN
            d.reason := 'PROMO_CODE_EXHAUSTED';
        ELSIF v_cuses IS NOT NULL AND v_cuses < 1 THEN
            d.reason := 'PROMO_CODE_EXHAUSTED';
        ELSIF c.budget_minor IS NOT NULL
              AND loyalty_discount(t.price_minor, c.discount_kind, c.discount_value,
                                   c.max_discount_minor)
                  > greatest(c.budget_minor - c.budget_spent_minor, 0) THEN
            d.reason := 'PROMO_CODE_BUDGET_SPENT';
        ELSIF v_cmoney IS NOT NULL
              AND loyalty_discount(t.price_minor, c.discount_kind, c.discount_value,
                                   c.max_discount_minor) > v_cmoney THEN
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
    d.campaign_id := c.campaign_id;
    d.campaign_limited := EXISTS (SELECT 1 FROM campaign_slots s WHERE s.campaign_id = c.campaign_id);
    RETURN d;
END
$$;
