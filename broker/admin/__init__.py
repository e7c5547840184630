"""The admin HTTP API: its server and its routes."""
