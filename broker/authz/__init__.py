"""Authorisation of Kafka requests: the middleware built from ACLs and the per-API adapters."""
