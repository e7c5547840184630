"""Topics on this broker: the storage handle, lookups, creation, views and retention."""
