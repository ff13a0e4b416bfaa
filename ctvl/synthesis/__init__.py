"""ctvl.synthesis."""
