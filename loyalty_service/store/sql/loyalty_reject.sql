-- A rejection row and its count; a failed write never hides the reason (it is logged).
CREATE OR REPLACE FUNCTION loyalty_reject(p_user uuid, p_code text, p_tariff text, p_reason text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rejections (user_id, code, tariff_id, reason)
    VALUES (p_user, p_code, p_tariff, p_reason);
    INSERT INTO rejection_counts AS r (code, reason, slot, count)
    SELECT CASE WHEN EXISTS (SELECT 1 FROM promo_codes c WHERE c.code = p_code)
                THEN p_code ELSE '' END, p_reason, floor(random() * 8)::smallint, 1
    ON CONFLICT (code, reason, slot) DO UPDATE SET count = r.count + 1;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'rejection_not_recorded reason=% error=%', p_reason, SQLERRM;
END
$$;
