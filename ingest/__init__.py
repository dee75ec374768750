"""mmdx ingest package."""
