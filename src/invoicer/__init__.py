"""The invoicer: closed billing periods to invoices with their fees, in Postgres."""
