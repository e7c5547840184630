"""Snapshots: drop-in ingest, creation, scheduling, worker processes and off-site copies."""
