-- Takes one use (and p_discount of the tally) from a slot of the code: a free slot in random
-- order (at most 32 rows to sort), skipping those other uses hold right now. When every slot
-- with uses left is held, it waits for one of them and takes it if a use is still there once
-- the holder is done (else it looks again), so the last use is found exactly. Returns the
-- slot, NULL when none is left.
-- The waiting is a conditional UPDATE of one chosen slot, not a locking scan: a scan keeps its
-- lock on every row it found empty until the transaction ends, so the waiters behind it would
-- queue on empty slots, one whole transaction after another.
CREATE OR REPLACE FUNCTION loyalty_take_slot(p_code text, p_discount bigint) RETURNS smallint
LANGUAGE plpgsql AS $$
DECLARE
    v_slot smallint;
    v_wait smallint;
BEGIN
    LOOP
        UPDATE promo_code_slots s
           SET uses_left = s.uses_left - 1, taken = s.taken + 1,
               spent_minor = s.spent_minor + p_discount
         WHERE s.code = p_code
           AND s.slot = (SELECT f.slot FROM promo_code_slots f
                          WHERE f.code = p_code AND coalesce(f.uses_left > 0, true)
                          ORDER BY random()
                          LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING s.slot INTO v_slot;
        IF v_slot IS NOT NULL THEN
            RETURN v_slot;
        END IF;
        -- Every slot with uses left (as committed now) is held by a use in flight.
        SELECT f.slot INTO v_wait FROM promo_code_slots f
         WHERE f.code = p_code AND coalesce(f.uses_left > 0, true)
         ORDER BY random() LIMIT 1;
        IF v_wait IS NULL THEN
            RETURN NULL;
        END IF;
        BEGIN
            UPDATE promo_code_slots s
               SET uses_left = s.uses_left - 1, taken = s.taken + 1,
                   spent_minor = s.spent_minor + p_discount
             WHERE s.code = p_code AND s.slot = v_wait AND coalesce(s.uses_left > 0, true)
            RETURNING s.slot INTO v_slot;
        EXCEPTION WHEN deadlock_detected THEN
            v_slot := NULL;  -- the block's locks went with it; look again
        END;
        IF v_slot IS NOT NULL THEN
            RETURN v_slot;
        END IF;
    END LOOP;
END
$$;
