"""Operator tools: consumer lag, dead letters, replay and reconcile, and the lag exporter."""
