"""ctvl.eval."""
