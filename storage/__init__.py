"""Durable Kafka-format partition logs (synchronous file I/O; no event loop).

Public API (everything raises only ``storage.errors.StorageError`` subclasses)::

    from storage.log_manager import LogManager, TopicMeta
    from storage.partition_log import PartitionLog, AppendResult, ReadResult

    lm = LogManager(data_dir, default_configs={"segment.bytes": "..."},
                    fileops=FileOps(),        # locks + recovers; run in a worker thread
                    max_partitions=None,      # cap on all topics' partitions together
                    max_open_segments=None)   # LRU of segment descriptors (fd_cache)
    lm.recovery_report() -> list[dict]        # what recovery repaired, for log lines
    lm.create_topic(name, partitions, configs=None, topic_id=None) -> TopicMeta
        # PartitionLimit past max_partitions; a failure part-way leaves no topic
    lm.delete_topic(name) / lm.add_partitions(name, total) / lm.alter_topic_configs(name, overrides)
    lm.set_defaults(defaults)   # new broker topic defaults, live on every topic
    lm.partition_total() -> int; lm.max_partitions; lm.handles (the FdCache)
    lm.topics() / lm.topic(name) / lm.topic_by_id(id)   # UnknownTopic if absent
    lm.partition(name, idx) -> PartitionLog             # UnknownTopic / UnknownPartition
    lm.logs() -> list[PartitionLog]; lm.apply_retention(now_ms) -> list[dict]
    LogManager.sync_many(logs) -> {log: durable_offset | StorageIOError}  # worker thread
    lm.close(clean=True)                                # writes the clean-shutdown marker
    TopicMeta(name, topic_id: bytes(16), partition_count, config: TopicConfig); .topic_uuid

    log.append(records, *, leader_epoch, now_ms=None) -> AppendResult(base_offset,
        last_offset, log_append_time_ms, log_start_offset)
        # InvalidBatch / MessageTooLarge (nothing written), StorageIOError
    log.append_verbatim(batches, *, aborted=None) -> AppendResult  # OffsetMismatch
        # unless at log end; aborted: {marker offset: AbortedTxn} indexed as given
    log.reset_start(base_offset)                      # empty log begins at base_offset
    log.read(offset, max_bytes, *, upper_bound=None) -> ReadResult(buffers, size,
        first_offset, next_offset)                    # OffsetOutOfRange
    log.log_start_offset / log_end_offset / durable_offset /
        needs_sync / leader_epoch / max_timestamp / size_bytes / failed / config
    log.sync() -> durable offset (worker thread; StorageIOError marks the log failed)
    log.checkpoint()      # persists the recovery point so a crash re-verifies only
                          # what was written since; sync() also does it by itself
                          # every log.checkpoint_interval_s (60 s)
    log.roll(); log.apply_retention(now_ms) -> [SegmentInfo]
    log.delete_records(before_offset) -> new log_start_offset
    log.offset_for_timestamp(ts_ms) -> (offset, timestamp) | None
    log.max_timestamp_offset() -> (offset, timestamp)   # (-1, -1) when empty
    log.epoch_end_offset(epoch) -> (epoch, end_offset)  # (-1, -1) if unknown
    log.append_marker(pid, epoch, commit, coordinator_epoch, *, leader_epoch) -> AppendResult
    log.first_unstable_offset -> int | None; log.last_stable_offset(hw) -> int
    log.aborted_transactions(start, upper) -> [AbortedTxn]   # from the .txnindex files
    log.aborted_entries(start, end) -> [AbortedTxn]   # markers in [start, end)
    log.stable_end(start, end) -> int   # a cut with no transaction open (snapshots)
    log.segments() / closed_segments() -> [SegmentInfo]
    log.link_or_copy_segments_to(dest_dir, end_offset, *, start_offset=0) -> [CopiedSegment]
    log.close(clean=True)
    log.read_mode = "mmap" (default: zero-copy views) | "pread" (bytes copies)

Threads: append/read/roll/delete_records from the event-loop thread; sync/sync_many,
checkpoint, retention, close, link_or_copy, create_topic/add_partitions and
LogManager() in worker threads. Every
method is safe against the others (one short lock per log; fsyncs run outside it).

Modules: errors, fileops (the injectable syscall seam), config (topic configs),
lock (data-dir lock), fd_cache (bounded open segment descriptors), segment, offset_index, time_index, epoch_cache, recovery,
validation (produce-side batch checks), segment_copy (snapshot links/copies),
log_types (result values), partition_log (with log_state and its parts
partition_durability / partition_retention / partition_cleaning /
partition_snapshots / partition_txns), log_manager, transactions / txn_state /
txn_index (ongoing and aborted transactions), log_cleaner / cleaner_build /
compaction / cleaner_txns / cleaner_swap (log compaction). (offset_store, producer_state
and snapshot* belong to the consumer-group, idempotence and snapshot work.)
"""
