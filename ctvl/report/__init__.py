"""ctvl.report."""
