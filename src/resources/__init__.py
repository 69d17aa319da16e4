"""The Lago API's route handlers, one module per resource: each reads the request, calls the
resource's rules and SQL in `store`, and answers Lago's JSON."""
