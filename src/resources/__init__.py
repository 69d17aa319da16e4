"""The Lago resources (customers, metrics, plans, subscriptions, taxes, coupons, wallets,
organizations, invoices, current usage), each with its routes, payload rules and SQL."""
