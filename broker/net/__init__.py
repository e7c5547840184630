"""The Kafka network edge: listeners, connections, the request contract and dispatch."""
