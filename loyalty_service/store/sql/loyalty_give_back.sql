-- Gives p_uses uses and p_discount back into the slot they came from (NULL: slot 0, where the
-- uses taken before slots existed were put).
-- Cancel and expiry call this in the transaction that changes the purchase's status, once.
CREATE OR REPLACE FUNCTION loyalty_give_back(p_code text, p_slot smallint, p_uses int, p_discount bigint)
RETURNS void LANGUAGE sql AS $$
    UPDATE promo_code_slots s
       SET uses_left = s.uses_left + p_uses, taken = s.taken - p_uses,
           spent_minor = s.spent_minor - p_discount
     WHERE s.code = p_code AND s.slot = coalesce(p_slot, 0);
    UPDATE promo_codes c SET budget_spent_minor = c.budget_spent_minor - p_discount
     WHERE c.code = p_code AND c.budget_minor IS NOT NULL;
$$;
