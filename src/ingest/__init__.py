"""The Lago-compatible HTTP front door: usage events to Kafka, the catalog to Postgres."""
