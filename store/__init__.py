"""mmdx store package."""
