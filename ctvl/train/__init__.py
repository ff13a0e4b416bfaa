"""ctvl.train."""
