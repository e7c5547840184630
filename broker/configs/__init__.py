"""Dynamic configuration: AlterConfigs and IncrementalAlterConfigs on topics and
brokers, the dynamic broker configs (KIP-226) and how they are persisted and applied
to running partitions."""
