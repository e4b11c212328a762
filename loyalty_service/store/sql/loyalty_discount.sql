-- domain/pricing.discount_amount: half-up percent, the cap, never below 0 nor above the base.
CREATE OR REPLACE FUNCTION loyalty_discount(p_base bigint, p_kind text, p_value bigint, p_cap bigint)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT least(greatest(least(r.raw, coalesce(p_cap, r.raw)), 0), p_base)
      FROM (SELECT CASE p_kind WHEN 'PERCENT_OFF' THEN (p_base * p_value + 50) / 100
                               WHEN 'AMOUNT_OFF' THEN p_value
                               ELSE p_base - p_value END AS raw) r
$$;
