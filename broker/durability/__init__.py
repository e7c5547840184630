"""Durability: the group commit of fsyncs and the waiters of acks=all produce."""
