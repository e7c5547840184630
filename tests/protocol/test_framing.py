"""FrameReader splits a byte stream into Kafka frames, whatever the chunking."""

from __future__ import annotations

import itertools
import struct
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import FrameTooLarge
from protocol.framing import ASSEMBLY_INITIAL, NEED_DATA, FrameReader, NeedData

MIB = 1024 * 1024


def frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def test_returns_need_data_until_a_frame_is_complete() -> None:
    """A partial frame yields NEED_DATA and counts as buffered."""
    reader = FrameReader()
    assert reader.next_frame() is NEED_DATA
    reader.receive_data(frame(b"hello")[:6])
    assert isinstance(reader.next_frame(), NeedData)
    assert reader.buffered == 6
    reader.receive_data(b"llo")
    got = reader.next_frame()
    assert isinstance(got, memoryview)
    assert bytes(got) == b"hello"
    assert reader.buffered == 0


def test_many_frames_in_one_bytes_chunk_are_zero_copy_slices() -> None:
    """Frames inside one bytes chunk are memoryview slices of that chunk."""
    chunk = b"".join(frame(bytes([i]) * i) for i in range(50))
    reader = FrameReader()
    reader.receive_data(chunk)
    frames = reader.frames()
    assert [bytes(f) for f in frames] == [bytes([i]) * i for i in range(50)]
    assert all(f.obj is chunk for f in frames)
    assert reader.frames() == []


def test_frame_split_across_chunks_is_assembled_once() -> None:
    """A 1 MiB frame arriving in 64 KiB chunks is returned whole."""
    body = bytes(range(256)) * 4096
    data = frame(body)
    reader = FrameReader()
    for i in range(0, len(data), 65536):
        reader.receive_data(data[i : i + 65536])
    got = reader.frames()
    assert len(got) == 1
    assert got[0] == body


def test_size_prefix_split_across_chunks() -> None:
    """A size prefix split byte by byte is reassembled."""
    reader = FrameReader()
    for byte in frame(b"abc") + frame(b""):
        reader.receive_data(bytes([byte]))
    assert [bytes(f) for f in reader.frames()] == [b"abc", b""]


def test_reused_caller_buffers_are_copied() -> None:
    """A bytearray the caller reuses after receive_data does not change frames."""
    buffer = bytearray(frame(b"first"))
    reader = FrameReader()
    reader.receive_data(memoryview(buffer))
    buffer[4:] = b"XXXXX"
    assert bytes(reader.frames()[0]) == b"first"


@pytest.mark.parametrize("size", [-1, -(2**31), 1025])
def test_rejects_negative_or_oversized_frames(size: int) -> None:
    """A negative or too-large size prefix raises FrameTooLarge."""
    reader = FrameReader(max_frame_size=1024)
    reader.receive_data(struct.pack(">i", size))
    with pytest.raises(FrameTooLarge) as info:
        reader.next_frame()
    assert info.value.size == size


def test_eof_is_recorded() -> None:
    """An empty chunk marks EOF; leftover bytes stay counted as buffered."""
    reader = FrameReader()
    reader.receive_data(b"\x00\x00")
    reader.receive_data(b"")
    assert reader.at_eof
    assert reader.next_frame() is NEED_DATA
    assert reader.buffered == 2


@settings(max_examples=200, deadline=None)
@given(
    bodies=st.lists(st.binary(max_size=300), max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=20),
    drain_each=st.booleans(),
    kind=st.sampled_from([bytes, bytearray, memoryview]),
)
def test_random_chunking_reassembles_exactly(
    bodies: list[bytes], cuts: list[int], drain_each: bool, kind: type
) -> None:
    """However a stream of frames is chunked, the same frames come out in order."""
    stream = b"".join(frame(b) for b in bodies)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    reader = FrameReader(max_frame_size=300)
    got: list[bytes] = []
    for start, end in itertools.pairwise(points):
        reader.receive_data(kind(stream[start:end]))
        if drain_each:
            got.extend(bytes(f) for f in reader.frames())
    got.extend(bytes(f) for f in reader.frames())
    assert got == bodies
    assert reader.buffered == 0


@settings(max_examples=200, deadline=None)
@given(
    bodies=st.lists(st.binary(max_size=300), min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=1, max_value=97), min_size=1, max_size=40),
    min_size=st.integers(min_value=1, max_value=64),
)
def test_receiving_in_place_gives_the_same_frames(
    bodies: list[bytes], cuts: list[int], min_size: int
) -> None:
    """A receiver that writes into assembly_buffer when offered (a BufferedProtocol
    reading the socket into it) gets the same frames as one feeding chunks."""
    stream = b"".join(frame(b) for b in bodies)
    reader = FrameReader()
    out: list[bytes] = []
    pos = 0
    for cut in itertools.cycle(cuts):
        if pos >= len(stream):
            break
        view = reader.assembly_buffer(min_size)
        if view is not None:
            assert len(view) >= min_size
            n = min(cut, len(view), len(stream) - pos)  # a recv() fills a prefix
            view[:n] = stream[pos : pos + n]
            reader.assembly_received(n)
        else:
            n = min(cut, len(stream) - pos)
            reader.receive_data(stream[pos : pos + n])
        pos += n
        out += [bytes(f) for f in reader.frames()]
        assert reader.buffered == pos - sum(4 + len(f) for f in out)
    assert out == bodies


def test_large_frame_body_is_received_in_place() -> None:
    """After the size prefix, the frame's own buffer is offered, grown as it fills;
    the completed frame is the buffer last received into."""
    body = bytes(range(256)) * 4096  # 1 MiB
    reader = FrameReader()
    reader.receive_data(frame(body)[:1000])
    assert reader.frames() == []
    pos, last = 996, None
    while pos < len(body):
        view = reader.assembly_buffer(16 * 1024)
        assert view is not None
        assert len(view) >= 16 * 1024
        assert len(view) <= len(body) - pos  # never past this frame
        n = min(len(view), 200 * 1024)
        view[:n] = body[pos : pos + n]
        reader.assembly_received(n)
        pos, last = pos + n, view
    (got,) = reader.frames()
    assert last is not None
    assert got.obj is last.obj  # the frame is the buffer received into
    assert bytes(got) == body
    assert reader.assembly_buffer(1) is None  # nothing being assembled
    reader.receive_data(frame(b"x" * 10)[:6])
    assert reader.assembly_buffer(64 * 1024) is None  # too little missing


def test_claimed_size_is_not_allocated_before_the_bytes_arrive() -> None:
    """A prefix claiming 100 MiB followed by a trickle allocates about the trickle."""
    reader = FrameReader()
    tracemalloc.start()
    try:
        reader.receive_data(struct.pack(">i", 100 * MIB))
        for _ in range(8):
            reader.receive_data(b"t" * 1024)
            assert reader.frames() == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 * MIB
    assert reader.assembly_size == 100 * MIB
    assert reader.assembly_missing == 100 * MIB - 8 * 1024
    assert 8 * 1024 <= reader.assembly_held <= 2 * ASSEMBLY_INITIAL


def test_assembly_buffer_grows_geometrically_with_the_bytes_received() -> None:
    """A 64 MiB frame trickling in holds at most a few times what arrived, and a
    frame fully arrived is held exactly."""
    size = 64 * MIB
    reader = FrameReader()
    reader.receive_data(struct.pack(">i", size))
    received = 0
    piece = b"p" * (256 * 1024)
    allocations = set()
    while received < size:
        reader.receive_data(piece)
        received += len(piece)
        frames = reader.frames()
        if frames:
            assert received == size
            assert len(frames[0]) == size
            break
        held = reader.assembly_held
        allocations.add(held)
        assert received <= held <= max(2 * ASSEMBLY_INITIAL, 8 * received)
    assert reader.assembly_held == 0
    assert len(allocations) <= 6  # grown a handful of times, not per piece


@settings(max_examples=300, deadline=None)
@given(
    bodies=st.lists(st.binary(max_size=600), min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=40),
    min_size=st.integers(min_value=1, max_value=64),
    initial=st.integers(min_value=1, max_value=128),
    in_place=st.lists(st.booleans(), min_size=1, max_size=10),
)
def test_growing_assembly_buffers_give_the_same_frames(
    bodies: list[bytes],
    cuts: list[int],
    min_size: int,
    initial: int,
    in_place: list[bool],
) -> None:
    """With a small initial assembly buffer (so every multi-chunk frame grows) and
    any mix of fed chunks and in-place receives, the frames come out unchanged, and
    a partly received frame never holds more than a few times what arrived."""
    stream = b"".join(frame(b) for b in bodies)
    reader = FrameReader(max_frame_size=600, assembly_initial=initial)
    out: list[bytes] = []
    pos = 0
    for cut, place in zip(itertools.cycle(cuts), itertools.cycle(in_place)):
        if pos >= len(stream):
            break
        view = reader.assembly_buffer(min_size) if place else None
        if view is not None:
            assert len(view) >= min_size
            assert len(view) <= reader.assembly_missing
            n = min(cut, len(view), len(stream) - pos)
            view[:n] = stream[pos : pos + n]
            reader.assembly_received(n)
        else:
            n = min(cut, len(stream) - pos)
            reader.receive_data(stream[pos : pos + n])
        pos += n
        out += [bytes(f) for f in reader.frames()]
        held, missing = reader.assembly_held, reader.assembly_missing
        arrived = reader.assembly_size - missing
        assert arrived <= held <= reader.assembly_size
        assert held <= max(2 * initial, 8 * arrived, arrived + min_size)
    assert out == bodies
    assert reader.buffered == 0
    assert reader.assembly_held == 0
