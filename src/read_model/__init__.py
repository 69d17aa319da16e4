"""Reads of invoices and credit notes shared by the API and the invoicer."""
