-- Rejections counted by code and reason for good; the individual rows are kept only for
-- LOYALTY_REJECTION_RETENTION_SECONDS (the sweeper deletes older ones). Attempts at codes that
-- do not exist are counted together under the code '' so guessing cannot grow this table.
CREATE TABLE rejection_counts (
    code   text NOT NULL,
    reason text NOT NULL,
    count  bigint NOT NULL CHECK (count >= 0),
    PRIMARY KEY (code, reason)
);
INSERT INTO rejection_counts (code, reason, count)
SELECT CASE WHEN EXISTS (SELECT 1 FROM promo_codes p WHERE p.code = r.code) THEN r.code ELSE '' END,
       r.reason, count(*)
FROM rejections r
GROUP BY 1, 2;
CREATE INDEX rejections_by_time ON rejections (occurred_at);
