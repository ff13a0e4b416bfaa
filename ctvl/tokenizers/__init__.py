"""ctvl.tokenizers."""
