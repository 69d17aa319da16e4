"""The event intake: `POST /api/v1/events` and `/events/batch` validated and produced to Kafka."""
