-- How many counter slots a code gets: 32 for an unlimited code (max_uses 0), else one per use
-- left up to 32, and at least one (its taken uses and discounts sit in slot 0).
CREATE OR REPLACE FUNCTION loyalty_slot_count(p_max_uses int, p_left int) RETURNS int
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_max_uses = 0 THEN 32 ELSE greatest(least(32, p_left), 1) END
$$;
