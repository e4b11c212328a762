-- Campaign rules: how long a discount lasts, a cap on percent discounts, a money budget,
-- first purchase only, a minimum price; purchases keep the duration they were sold with.
ALTER TABLE promo_codes
    ADD COLUMN duration            text NOT NULL DEFAULT 'ONCE'
        CHECK (duration IN ('ONCE', 'REPEATING', 'FOREVER')),
    ADD COLUMN duration_periods    int NOT NULL DEFAULT 0 CHECK (duration_periods >= 0),
    ADD COLUMN max_discount_minor  bigint CHECK (max_discount_minor >= 0),  -- NULL: no cap
    ADD COLUMN budget_minor        bigint CHECK (budget_minor >= 0),  -- NULL: no budget
    -- The discounts of the live (PENDING or COMPLETED) purchases; kept for every code.
    ADD COLUMN budget_spent_minor  bigint NOT NULL DEFAULT 0 CHECK (budget_spent_minor >= 0),
    ADD COLUMN first_purchase_only boolean NOT NULL DEFAULT false,
    ADD COLUMN min_price_minor     bigint CHECK (min_price_minor >= 0),  -- NULL: any price
    -- The last line of defence, as for uses: no statement can spend past the budget.
    ADD CONSTRAINT promo_codes_within_budget
        CHECK (budget_minor IS NULL OR budget_spent_minor <= budget_minor);

ALTER TABLE purchases
    ADD COLUMN duration         text NOT NULL DEFAULT 'ONCE'
        CHECK (duration IN ('ONCE', 'REPEATING', 'FOREVER')),
    ADD COLUMN duration_periods int NOT NULL DEFAULT 0;

-- The code report's days: purchases by creation and by their final status change.
CREATE INDEX purchases_by_code_created ON purchases (code, created_at);
CREATE INDEX rejections_by_code_time ON rejections (code, occurred_at);
