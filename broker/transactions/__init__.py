"""The transaction coordinator (Kafka's ``TransactionCoordinator``, KIP-98)."""
