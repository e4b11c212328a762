-- Auth rebuilds Redis's revocation list from the sessions revoked within one access-token
-- lifetime (after Redis lost its data, and as a catch-up each second): an index for that scan.
CREATE INDEX sessions_recently_revoked ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
