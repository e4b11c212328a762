-- The uses taken of a code: a sum over its slots, never a count of purchases.
CREATE OR REPLACE FUNCTION promo_code_uses(p_code text) RETURNS int
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(taken), 0)::int FROM promo_code_slots WHERE code = p_code
$$;
