-- The promo-code guessing throttle (loyalty_service/use_cases/guessing.py): token buckets that
-- a look-up finding nothing usable spends from, each refilled smoothly at p_rates tokens a
-- millisecond up to p_caps, on PostgreSQL's clock (every replica shares it). p_buckets come
-- sorted: the order every spend locks them in.
-- A bucket's tokens at p_now: refilled since p_at, up to p_cap.
CREATE OR REPLACE FUNCTION loyalty_guess_tokens(
    p_tokens float8, p_at timestamptz, p_cap float8, p_rate float8, p_now timestamptz)
RETURNS float8 LANGUAGE sql IMMUTABLE AS $$
    SELECT least(p_cap, p_tokens + greatest(extract(epoch FROM p_now - p_at) * 1000, 0) * p_rate)
$$;
