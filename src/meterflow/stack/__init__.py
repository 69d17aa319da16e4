"""The local Kafka broker and Postgres server meterflow runs when no external one is given."""
