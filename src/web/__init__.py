"""HTTP plumbing every HTTP part shares: Lago's error shape, payload reading, API-key auth,
pagination and the request context."""
