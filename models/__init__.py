"""mmdx models package."""
