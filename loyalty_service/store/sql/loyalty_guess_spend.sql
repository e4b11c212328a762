-- The guessing throttle (loyalty_guess_tokens.sql). A miss: a token from every bucket if every
-- one holds one (returns 0), else none (returns the wait in ms). The rows are locked in
-- p_buckets' order and stay locked to the end of the caller's statement, so concurrent misses
-- of one caller queue here, and no more get through than the buckets hold.
CREATE OR REPLACE FUNCTION loyalty_guess_spend(p_buckets text[], p_caps float8[], p_rates float8[])
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_tokens float8[] := '{}';
    v_wait   bigint := 0;
    v_now    timestamptz;
    v_held   float8;
    v_at     timestamptz;
BEGIN
    FOR i IN 1 .. cardinality(p_buckets) LOOP
        INSERT INTO guess_buckets (bucket, tokens, at)
        VALUES (p_buckets[i], p_caps[i], clock_timestamp())
        ON CONFLICT (bucket) DO NOTHING;
        SELECT b.tokens, b.at INTO v_held, v_at
          FROM guess_buckets b WHERE b.bucket = p_buckets[i] FOR UPDATE;
        v_now := clock_timestamp();
        v_tokens[i] := loyalty_guess_tokens(v_held, v_at, p_caps[i], p_rates[i], v_now);
        IF v_tokens[i] < 1 THEN
            v_wait := greatest(v_wait, ceil((1 - v_tokens[i]) / p_rates[i])::bigint);
        END IF;
    END LOOP;
    IF v_wait > 0 THEN
        RETURN v_wait;
    END IF;
    FOR i IN 1 .. cardinality(p_buckets) LOOP
        UPDATE guess_buckets SET tokens = v_tokens[i] - 1, at = v_now WHERE bucket = p_buckets[i];
    END LOOP;
    RETURN 0;
END
$$;
