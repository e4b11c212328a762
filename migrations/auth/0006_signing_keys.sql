-- Signing keys with a state, so a rotation publishes the next key before anyone signs with it
-- and keeps the previous one published until every token it signed has expired.
--   next      published in the JWKS, not yet signing (every replica must publish it first)
--   current   signing (exactly one), published
--   previous  no longer signing, still published until retire_at
--   retired   not published; its tokens have all expired
CREATE TABLE signing_keys (
    kid          text PRIMARY KEY,
    private_pem  text NOT NULL,
    state        text NOT NULL CHECK (state IN ('next', 'current', 'previous', 'retired')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz,
    retire_at    timestamptz,
    CHECK ((state = 'previous') = (retire_at IS NOT NULL AND state <> 'retired')
           OR state = 'retired')
);
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (state) WHERE state = 'current';
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys (state) WHERE state = 'next';

-- Which keys each running replica publishes, refreshed every few seconds: rotate-key makes
-- the next key current only once every replica seen lately publishes it.
CREATE TABLE key_sightings (
    replica  text PRIMARY KEY,
    kids     text[] NOT NULL,
    seen_at  timestamptz NOT NULL DEFAULT now()
);
