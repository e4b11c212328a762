-- ApplyPromoCode: the decision and, when refused, its rejection record.
CREATE OR REPLACE FUNCTION loyalty_apply(p_code text, p_tariff text, p_user uuid, p_now timestamptz)
RETURNS loyalty_decision LANGUAGE plpgsql AS $$
DECLARE
    d loyalty_decision := loyalty_decide(p_code, p_tariff, p_user, p_now);
BEGIN
    IF d.reason IS NOT NULL THEN
        PERFORM loyalty_reject(p_user, p_code, p_tariff, d.reason);
    END IF;
    RETURN d;
END
$$;
