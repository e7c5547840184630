"""Request handlers, one module per API key (discovered by ``broker.net.dispatch``).

Each module registers its function with ``@handler(api_key=..., name=...)`` and opens
with a docstring stating the API's behaviour and version notes (kfake's shape).
Handlers map storage errors to per-partition Kafka error codes; they never raise
for bad client input.
"""
