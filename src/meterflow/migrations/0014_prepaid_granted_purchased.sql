-- Which part of a wallet's balance is granted (the rest was purchased), so that invoices
-- can say how much of their prepaid credits was granted and how much purchased. Within a
-- wallet, granted credits are consumed first (Lago's consumption order at equal priority).
ALTER TABLE wallets
    ADD COLUMN granted_balance_cents bigint NOT NULL DEFAULT 0,
    ADD CONSTRAINT wallets_granted_within_balance
        CHECK (granted_balance_cents >= 0 AND granted_balance_cents <= balance_cents);

ALTER TABLE invoices
    ADD COLUMN prepaid_granted_credit_amount_cents bigint NOT NULL DEFAULT 0,
    ADD COLUMN prepaid_purchased_credit_amount_cents bigint NOT NULL DEFAULT 0;
