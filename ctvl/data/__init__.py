"""ctvl.data."""
