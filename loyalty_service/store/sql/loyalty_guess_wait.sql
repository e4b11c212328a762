-- The guessing throttle (loyalty_guess_tokens.sql): milliseconds until every bucket holds a
-- token (0: a look-up may run). Reads only.
CREATE OR REPLACE FUNCTION loyalty_guess_wait(p_buckets text[], p_caps float8[], p_rates float8[])
RETURNS bigint LANGUAGE sql AS $$
    SELECT coalesce(max(ceil((1 - t.tokens) / k.rate)), 0)::bigint
      FROM unnest(p_buckets, p_caps, p_rates) AS k(bucket, cap, rate)
      JOIN guess_buckets b ON b.bucket = k.bucket
     CROSS JOIN LATERAL (SELECT loyalty_guess_tokens(b.tokens, b.at, k.cap, k.rate,
                                                     clock_timestamp()) AS tokens) t
     WHERE t.tokens < 1
$$;
