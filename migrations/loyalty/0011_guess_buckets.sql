-- The promo-code guessing throttle's token buckets, moved from Redis into the statements that
-- look codes up (loyalty_use, loyalty_apply): a look-up that finds a usable code spends nothing
-- and costs one index read, where it cost two Redis round trips (take a token, give it back).
-- UNLOGGED: a crash forgets who was guessing, as losing Redis did. A bucket is a row only
-- while it is short of full; the retention worker deletes the rest (full again, by refill).
CREATE UNLOGGED TABLE guess_buckets (
    bucket text PRIMARY KEY,
    tokens double precision NOT NULL,
    at     timestamptz NOT NULL
);
CREATE INDEX guess_buckets_at ON guess_buckets (at);

-- The functions take the buckets now (loyalty_service/store/sql/): the old signatures go, so
-- that no call can reach them by its argument count.
DROP FUNCTION IF EXISTS loyalty_use(text, text, uuid, text, uuid, timestamptz, bytea);
DROP FUNCTION IF EXISTS loyalty_apply(text, text, uuid, timestamptz);
