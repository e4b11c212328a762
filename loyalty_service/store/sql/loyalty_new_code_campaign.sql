-- The campaign of codes inserted without one: one campaign per insert statement and set of
-- rules (a generated batch shares its rules, so it is one campaign; an import's rows with
-- different rules are one campaign each). Such a campaign has no limits of its own: the
-- code's max_uses and budget stay on the code, as before campaigns existed.
-- The trigger promo_codes_campaign (AFTER INSERT ON promo_codes, migration 0009) runs this.
CREATE OR REPLACE FUNCTION loyalty_new_code_campaign() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r    record;
    v_id uuid;
BEGIN
    FOR r IN
        SELECT md5(row(n.discount_kind, n.discount_value, n.currency, n.starts_at, n.ends_at,
                       n.max_uses, n.per_user_limit, n.tariff_ids, n.all_users, n.description,
                       n.duration, n.duration_periods, n.max_discount_minor, n.budget_minor,
                       n.first_purchase_only, n.min_price_minor, n.referrer_id,
                       n.refund_returns_use)::text) AS rules,
               min(n.code) AS first, count(*) AS codes
          FROM new_codes n WHERE n.campaign_id IS NULL GROUP BY 1
    LOOP
        v_id := gen_random_uuid();
        INSERT INTO campaigns (campaign_id, name, description, kind, discount_kind,
                               discount_value, currency, starts_at, ends_at, per_user_limit,
                               tariff_ids, all_users, duration, duration_periods,
                               max_discount_minor, first_purchase_only, min_price_minor,
                               refund_returns_use)
        SELECT v_id, CASE WHEN r.codes = 1 THEN c.code ELSE c.code || ' +' || (r.codes - 1) END,
               c.description, CASE WHEN c.referrer_id IS NULL THEN 'CODE' ELSE 'REFERRAL' END,
               c.discount_kind, c.discount_value, c.currency, c.starts_at, c.ends_at,
               c.per_user_limit, c.tariff_ids, c.all_users, c.duration, c.duration_periods,
               c.max_discount_minor, c.first_purchase_only, c.min_price_minor,
               c.refund_returns_use
          FROM new_codes c WHERE c.code = r.first;
        UPDATE promo_codes p SET campaign_id = v_id
          FROM new_codes n
         WHERE p.code = n.code AND n.campaign_id IS NULL
           AND md5(row(n.discount_kind, n.discount_value, n.currency, n.starts_at, n.ends_at,
                       n.max_uses, n.per_user_limit, n.tariff_ids, n.all_users, n.description,
                       n.duration, n.duration_periods, n.max_discount_minor, n.budget_minor,
                       n.first_purchase_only, n.min_price_minor, n.referrer_id,
                       n.refund_returns_use)::text) = r.rules;
    END LOOP;
    RETURN NULL;
END
$$;
