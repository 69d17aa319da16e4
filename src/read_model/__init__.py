"""Invoices and credit notes as stored, read (and finalized, consumed) the same way by the
API and the invoicer, so neither imports the other."""
