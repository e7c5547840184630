"""Idempotent producers: producer ids, epochs and the sequence (duplicate) check."""
