-- The promo-code guessing throttle (loyalty_service/use_cases/guessing.py): token buckets that
-- a look-up finding nothing usable spends from, each refilled smoothly at p_rates tokens a
-- millisecond up to p_caps, on PostgreSQL's clock (every replica shares it). p_buckets come
-- sorted: the order every spend locks them in.

CREATE OR REPLACE FUNCTION loyalty_guess_tokens(
    p_tokens float8, p_at timestamptz, p_cap float8, p_rate float8, p_now timestamptz)
RETURNS float8 LANGUAGE sql IMMUTABLE AS $$
    SELECT least(p_cap, p_tokens + greatest(extract(epoch FROM p_now - p_at) * 1000, 0) * p_rate)
$$;

-- Milliseconds until every bucket holds a token (0: a look-up may run). Reads only.
CREATE OR REPLACE FUNCTION loyalty_guess_wait(p_buckets text[], p_caps float8[], p_rates float8[])
RETURNS bigint LANGUAGE sql AS $$
    SELECT coalesce(max(ceil((1 - t.tokens) / k.rate)), 0)::bigint
      FROM unnest(p_buckets, p_caps, p_rates) AS k(bucket, cap, rate)
      JOIN guess_buckets b ON b.bucket = k.bucket
     CROSS JOIN LATERAL (SELECT loyalty_guess_tokens(b.tokens, b.at, k.cap, k.rate,
                                                     clock_timestamp()) AS tokens) t
     WHERE t.tokens < 1
$$;

-- A miss: a token from every bucket if every one holds one (returns 0), else none (returns
-- the wait in ms). The rows stay locked to the end of the caller's statement, so concurrent
-- misses of one caller queue here, and no more get through than the buckets hold.
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
