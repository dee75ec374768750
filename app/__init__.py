"""mmdx app package."""
