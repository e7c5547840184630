"""Fetch sessions (KIP-227): the broker's cache of incremental fetch sessions."""
