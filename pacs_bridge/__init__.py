"""mmdx pacs_bridge package."""
