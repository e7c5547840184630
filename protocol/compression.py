"""Record-batch compression codecs (attribute bits 0-2), backed by cramjam.

What Kafka clients write, and so what we must read:

- gzip: RFC 1952 streams (Java ``GZIPOutputStream``, librdkafka zlib, Python ``gzip``).
  Several concatenated members are decoded as one stream.
- snappy: Java's client wraps snappy in xerial ``SnappyOutputStream`` framing
  (magic ``\\x82SNAPPY\\x00``, version and compatible int32s, then blocks of
  int32 length + raw snappy); librdkafka and kafka-python read that framing, and
  librdkafka writes plain raw snappy. We decode xerial, raw and (defensively) the
  official ``sNaPpY`` stream framing, and encode xerial like the Java client.
- lz4: the standard LZ4 frame format (KIP-57) for magic 2. The broken header
  checksum of magic-0 batches (pre KIP-57) is fixed in :mod:`protocol.legacy`.
- zstd: standard frames (KIP-110), with or without content size, possibly several.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Final

import cramjam

from protocol.errors import ProtocolError

__all__ = ["Compression", "CompressionError", "compress", "decompress"]

Buffer = bytes | bytearray | memoryview

XERIAL_MAGIC: Final = b"\x82SNAPPY\x00"
_XERIAL_HEADER: Final = struct.Struct(">8sii")  # magic, version, compatible version
_XERIAL_BLOCK_SIZE: Final = 32 * 1024  # SnappyOutputStream's default block size
_SNAPPY_STREAM_MAGIC: Final = b"\xff\x06\x00\x00sNaPpY"
_INT32: Final = struct.Struct(">i")


class Compression(IntEnum):
    """Codec in attribute bits 0-2 (same numbers in magic 0, 1 and 2)."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


class CompressionError(ProtocolError):
    """Compressed data could not be decoded, or the codec is unknown."""


def compress(codec: Compression, data: Buffer) -> bytes:
    """Compress ``data`` the way the Java client does for ``codec``."""
    try:
        match codec:
            case Compression.NONE:
                return bytes(data)
            case Compression.GZIP:
                return bytes(cramjam.gzip.compress(data))
            case Compression.SNAPPY:
                return _xerial_encode(data)
            case Compression.LZ4:
                return _lz4_encode(data)
            case Compression.ZSTD:
                return bytes(cramjam.zstd.compress(data))
    except cramjam.CompressionError as exc:
        raise CompressionError(f"{codec.name} compression failed: {exc}") from exc
    raise CompressionError(f"unknown codec {codec!r}")


def decompress(codec: Compression, data: Buffer) -> bytes:
    """Decompress a records section written by any Kafka client.

    Raises:
        CompressionError: the data is not valid for ``codec`` or the codec is unknown.
    """
    try:
        match codec:
            case Compression.NONE:
                return bytes(data)
            case Compression.GZIP:
                return bytes(cramjam.gzip.decompress(data))
            case Compression.SNAPPY:
                return _snappy_decode(data)
            case Compression.LZ4:
                return bytes(cramjam.lz4.decompress(data))
            case Compression.ZSTD:
                return bytes(cramjam.zstd.decompress(data))
    except cramjam.DecompressionError as exc:
        raise CompressionError(f"{codec.name} data is corrupt: {exc}") from exc
    raise CompressionError(f"unknown codec {codec!r}")


def _lz4_encode(data: Buffer) -> bytes:
    """One LZ4 frame as the Java client's Lz4BlockOutputStream reads it.

    Java rejects linked blocks ("Dependent block stream is unsupported") and older
    versions ignore content checksums, so blocks are independent and unchecksummed
    at the content level (block checksums on, as lz4 writes by default).
    """
    compressor = cramjam.lz4.Compressor(content_checksum=False, block_linked=False)
    compressor.compress(data if isinstance(data, bytes) else bytes(data))
    return bytes(compressor.finish())


def _xerial_encode(data: Buffer) -> bytes:
    """Xerial framing as SnappyOutputStream writes it: header, then 32 KiB blocks."""
    view = memoryview(data)
    parts = [_XERIAL_HEADER.pack(XERIAL_MAGIC, 1, 1)]
    for start in range(0, len(view), _XERIAL_BLOCK_SIZE):
        block = bytes(
            cramjam.snappy.compress_raw(view[start : start + _XERIAL_BLOCK_SIZE])
        )
        parts.append(_INT32.pack(len(block)))
        parts.append(block)
    return b"".join(parts)


def _snappy_decode(data: Buffer) -> bytes:
    """Decode xerial-framed, stream-framed or raw snappy."""
    view = memoryview(data)
    if len(view) >= _XERIAL_HEADER.size and bytes(view[:8]) == XERIAL_MAGIC:
        return _xerial_decode(view)
    if bytes(view[: len(_SNAPPY_STREAM_MAGIC)]) == _SNAPPY_STREAM_MAGIC:
        return bytes(cramjam.snappy.decompress(view))
    return bytes(cramjam.snappy.decompress_raw(view))


def _xerial_decode(view: memoryview) -> bytes:
    pos = _XERIAL_HEADER.size
    out: list[bytes] = []
    while pos < len(view):
        if len(view) - pos < _INT32.size:
            raise CompressionError("truncated xerial snappy block length")
        (length,) = _INT32.unpack_from(view, pos)
        pos += _INT32.size
        if length < 0 or pos + length > len(view):
            raise CompressionError(f"xerial snappy block of {length} bytes truncated")
        out.append(bytes(cramjam.snappy.decompress_raw(view[pos : pos + length])))
        pos += length
    return b"".join(out)
