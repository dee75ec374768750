"""mmdx reports package."""
