-- The discount granted by a code's uses: a sum over its slots.
CREATE OR REPLACE FUNCTION promo_code_spent(p_code text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(spent_minor), 0)::bigint FROM promo_code_slots WHERE code = p_code
$$;
