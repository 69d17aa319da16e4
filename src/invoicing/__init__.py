"""Closed periods priced and written as invoices: shared by the invoicer and the preview."""
