"""mmdx ecg package."""
