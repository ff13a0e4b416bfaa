"""ctvl.io."""
