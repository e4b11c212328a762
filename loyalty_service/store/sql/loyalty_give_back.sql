-- Gives p_uses uses and p_discount back into the slot they came from (NULL: slot 0, where the
-- uses taken before slots existed were put), and into the code's campaign's slots when the
-- campaign has limits (into slot p_slot modulo their number: only their sums have meaning).
-- Cancel, expiry and refund call this in the transaction that changes the purchase's status,
-- once. Lock order as in loyalty_use: the code's slot, then the campaign's.
CREATE OR REPLACE FUNCTION loyalty_give_back(p_code text, p_slot smallint, p_uses int, p_discount bigint)
RETURNS void LANGUAGE sql AS $$
    UPDATE promo_code_slots s
       SET uses_left = s.uses_left + p_uses, taken = s.taken - p_uses,
           spent_minor = s.spent_minor - p_discount
     WHERE s.code = p_code AND s.slot = coalesce(p_slot, 0);
    UPDATE promo_codes c SET budget_spent_minor = c.budget_spent_minor - p_discount
     WHERE c.code = p_code AND c.budget_minor IS NOT NULL;
    UPDATE campaign_slots k
       SET uses_left = k.uses_left + p_uses, taken = k.taken - p_uses,
           budget_left_minor = k.budget_left_minor + p_discount,
           spent_minor = k.spent_minor - p_discount
      FROM promo_codes c
     WHERE c.code = p_code AND k.campaign_id = c.campaign_id
       AND k.slot = coalesce(p_slot, 0) % nullif((SELECT count(*) FROM campaign_slots n
                                                    WHERE n.campaign_id = c.campaign_id), 0);
$$;
