"""Invoices as stored, read (and finalized) the same way by the API and the invoicer."""
