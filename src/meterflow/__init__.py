"""meterflow: usage-based billing as a streaming pipeline, compatible with Lago's v1 API."""
