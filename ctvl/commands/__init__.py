"""ctvl.commands."""
