"""Consumer groups, committed offsets and idempotent producers (issue 6).

- :mod:`broker.groups.model` — requests, results and effects of the coordinator;
- :mod:`broker.groups.group` — one group's mutable state;
- :mod:`broker.groups.coordinator` — the pure state machine (no I/O, explicit clock);
- :mod:`broker.groups.offsets` — commit/fetch/expiry rules (pure);
- :mod:`broker.groups.service` — the anyio driver (waits, one timer task, durable commits);
- :mod:`broker.producers.service` — InitProducerId and Produce's idempotence check.
"""
