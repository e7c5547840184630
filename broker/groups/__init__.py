"""Consumer groups and committed offsets.

- :mod:`broker.groups.model` — requests, results and effects of the coordinator;
- :mod:`broker.groups.group` — one group's mutable state;
- :mod:`broker.groups.coordinator` — the pure state machine (no I/O, explicit clock);
- :mod:`broker.groups.offsets` — commit/fetch/expiry rules (pure);
- :mod:`broker.groups.service` — the anyio driver (waits, one timer task, durable
  commits), its settings (``GroupConfig.from_config``) and its lifecycle
  (``GroupService.open``/``close``).
"""
