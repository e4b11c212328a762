-- Slots of codes as they are created, in one statement per insert statement.
-- The trigger promo_codes_slots (AFTER INSERT ON promo_codes, migration 0004) runs this.
CREATE OR REPLACE FUNCTION loyalty_new_code_slots() RETURNS trigger
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
