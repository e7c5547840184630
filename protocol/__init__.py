"""Ailurus' sans-IO Kafka protocol layer: bytes in, objects out, never a socket.

``framing`` splits the stream into frames, ``codec`` decodes requests and encodes
responses (``compiler`` builds its functions from the ``schema`` declarations in
``messages``), ``records`` owns the record-batch format (``record_builder`` builds
batches and walks their records), ``errors`` and ``error_codes`` the failures.
Import the submodules; this package exports nothing, so that storage can import
``protocol.records`` without loading the codec.
"""
