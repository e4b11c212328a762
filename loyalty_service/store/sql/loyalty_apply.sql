-- ApplyPromoCode: the decision and, when refused, its rejection record. p_guess_*: the
-- guessing throttle, as loyalty_use takes it (a refused guess is only its reason).
CREATE OR REPLACE FUNCTION loyalty_apply(
    p_code text, p_tariff text, p_user uuid, p_now timestamptz,
    p_guess_buckets text[] DEFAULT NULL, p_guess_caps float8[] DEFAULT NULL,
    p_guess_rates float8[] DEFAULT NULL, p_guess_misses text[] DEFAULT NULL)
RETURNS loyalty_decision LANGUAGE plpgsql AS $$
DECLARE
    d loyalty_decision;
BEGIN
    IF p_guess_buckets IS NOT NULL
       AND loyalty_guess_wait(p_guess_buckets, p_guess_caps, p_guess_rates) > 0 THEN
        d.reason := 'TOO_MANY_PROMO_ATTEMPTS';
        RETURN d;
    END IF;
    d := loyalty_decide(p_code, p_tariff, p_user, p_now);
    -- Nested, not AND: "NULL AND f()" calls f() (a hit's reason is NULL).
    IF d.reason = ANY (p_guess_misses) THEN
        IF loyalty_guess_spend(p_guess_buckets, p_guess_caps, p_guess_rates) > 0 THEN
            d := NULL;
            d.reason := 'TOO_MANY_PROMO_ATTEMPTS';
            RETURN d;
        END IF;
    END IF;
    IF d.reason IS NOT NULL THEN
        PERFORM loyalty_reject(p_user, p_code, p_tariff, d.reason);
    END IF;
    RETURN d;
END
$$;
