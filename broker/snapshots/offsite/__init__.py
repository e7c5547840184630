"""Off-site snapshot copies: push and pull to a remote directory or bucket."""
