"""Lago's webhooks: endpoints, the outbox written with each change, signing and delivery."""
