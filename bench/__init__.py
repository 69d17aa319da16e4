"""Benchmarks of meterflow against a Postgres-per-event baseline (not tests)."""
