-- Takes one use and p_discount of the budget from a limited campaign's slots. Returns the
-- slot, or -1 when the campaign has no use left, -2 when its budget is short of p_discount.
-- Most uses take from one free slot that holds enough, in random order, skipping the slots
-- other uses hold right now (the hot path: no queue on one row). When no free slot holds
-- enough (all held, or the money left is spread thinner than one discount), it locks every
-- slot in slot order and decides on the campaign's totals, taking the discount from as many
-- slots as it needs: the last kopeck of the budget is reachable, and never overdrawn.
-- Lock order: the code's slot (loyalty_take_slot) first, then these; give-backs likewise.
CREATE OR REPLACE FUNCTION loyalty_take_campaign_slot(p_campaign uuid, p_discount bigint)
RETURNS smallint LANGUAGE plpgsql AS $$
DECLARE
    v_slot   smallint;
    v_uses   bigint;
    v_budget numeric;
    v_need   bigint := p_discount;
    v_part   bigint;
    r        record;
BEGIN
    -- In a block of its own, undone when it finds no slot: a locking read that meets a row
    -- changed since its snapshot rechecks it, skips it when it no longer qualifies, and keeps
    -- it locked all the same. Such stray locks, taken in random order, would break the slot
    -- order below (two uses each holding a slot the other waits for: a deadlock, found only
    -- after deadlock_timeout). Undoing the block releases them.
    BEGIN
        UPDATE campaign_slots s
           SET uses_left = s.uses_left - 1, taken = s.taken + 1,
               budget_left_minor = s.budget_left_minor - p_discount,
               spent_minor = s.spent_minor + p_discount
         WHERE s.campaign_id = p_campaign
           AND s.slot = (SELECT f.slot FROM campaign_slots f
                          WHERE f.campaign_id = p_campaign AND coalesce(f.uses_left > 0, true)
                            AND coalesce(f.budget_left_minor >= p_discount, true)
                          ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING s.slot INTO v_slot;
        IF v_slot IS NOT NULL THEN
            RETURN v_slot;
        END IF;
        RAISE SQLSTATE 'LY002';
    EXCEPTION WHEN SQLSTATE 'LY002' THEN
        NULL;
    END;
    PERFORM 1 FROM campaign_slots f WHERE f.campaign_id = p_campaign ORDER BY f.slot FOR UPDATE;
    SELECT sum(f.uses_left), sum(f.budget_left_minor) INTO v_uses, v_budget
      FROM campaign_slots f WHERE f.campaign_id = p_campaign;
    IF v_uses IS NOT NULL AND v_uses < 1 THEN
        RETURN -1;
    END IF;
    IF v_budget IS NOT NULL AND v_budget < p_discount THEN
        RETURN -2;
    END IF;
    SELECT f.slot INTO v_slot FROM campaign_slots f
     WHERE f.campaign_id = p_campaign AND coalesce(f.uses_left > 0, true)
     ORDER BY f.slot LIMIT 1;
    UPDATE campaign_slots s
       SET uses_left = s.uses_left - 1, taken = s.taken + 1, spent_minor = s.spent_minor + p_discount
     WHERE s.campaign_id = p_campaign AND s.slot = v_slot;
    IF v_budget IS NOT NULL THEN
        FOR r IN SELECT f.slot, f.budget_left_minor FROM campaign_slots f
                  WHERE f.campaign_id = p_campaign AND f.budget_left_minor > 0 ORDER BY f.slot
        LOOP
            EXIT WHEN v_need = 0;
            v_part := least(v_need, r.budget_left_minor);
            UPDATE campaign_slots s SET budget_left_minor = s.budget_left_minor - v_part
             WHERE s.campaign_id = p_campaign AND s.slot = r.slot;
            v_need := v_need - v_part;
        END LOOP;
    END IF;
    RETURN v_slot;
END
$$;
