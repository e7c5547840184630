"""The high-watermark checkpoint file: Kafka's text format, atomic replace, and a
damaged file refused with CorruptCheckpoint (never anything else)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.errors import StorageIOError
from storage.fileops import FileOps
from storage.hw_checkpoint import (
    FILE_NAME,
    CorruptCheckpoint,
    HighWatermarkCheckpoint,
    decode,
    encode,
)


def test_round_trip_in_kafkas_text_format(tmp_path: Path) -> None:
    """The file holds a version line, a count line and 'topic partition offset'
    lines, and reads back what was written."""
    cp = HighWatermarkCheckpoint(tmp_path)
    assert cp.read() == {}  # no file yet
    offsets = {("orders", 1): 99, ("orders", 0): 1234, ("a.b-c_d", 7): 2**63 - 1}
    cp.write(offsets)
    text = (tmp_path / FILE_NAME).read_text()
    assert text == "0\n3\na.b-c_d 7 9223372036854775807\norders 0 1234\norders 1 99\n"
    assert cp.read() == offsets
    cp.write({})
    assert (tmp_path / FILE_NAME).read_text() == "0\n0\n"
    assert cp.read() == {}
    assert sorted(os.listdir(tmp_path)) == [FILE_NAME]  # no temp file left


_topic = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
    min_size=1,
    max_size=40,
)


@given(
    st.dictionaries(
        st.tuples(_topic, st.integers(0, 2**31 - 1)), st.integers(0, 2**63 - 1)
    )
)
def test_any_offsets_round_trip(offsets: dict[tuple[str, int], int]) -> None:
    """Every legal topic name, partition and offset comes back unchanged."""
    assert decode(encode(offsets)) == offsets


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"0\n",
        b"0\n1\n",  # an entry missing
        b"0\n1\nt 0 5",  # torn: no final newline
        b"0\n2\nt 0 5\n",  # count says 2
        b"1\n1\nt 0 5\n",  # another version
        b"0\n1\nt 0\n",
        b"0\n1\nt 0 5 6\n",
        b"0\n1\nt x 5\n",
        b"0\n1\nt 0 -5\n",
        b"0\n1\nt 0 99999999999999999999\n",
        b"0\n2\nt 0 5\nt 0 6\n",  # repeated partition
        b"0\n1\n 0 5\n",
        b"\xff\xfe\x00garbage",
        b"\x00" * 4096,  # a page of zeros (a file torn by a crash on some filesystems)
    ],
)
def test_a_damaged_file_is_corrupt_checkpoint(tmp_path: Path, data: bytes) -> None:
    """Torn, truncated or garbage files raise CorruptCheckpoint, nothing else."""
    (tmp_path / FILE_NAME).write_bytes(data)
    with pytest.raises(CorruptCheckpoint):
        HighWatermarkCheckpoint(tmp_path).read()


def test_names_that_cannot_be_read_back_are_refused() -> None:
    """A topic name with whitespace is never written (it could not be parsed)."""
    with pytest.raises(ValueError, match="cannot be checkpointed"):
        encode({("a b", 0): 1})


class _FailingRename(FileOps):
    def replace(self, src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    """A write that fails raises StorageIOError and the previous file stays whole."""
    HighWatermarkCheckpoint(tmp_path).write({("t", 0): 5})
    failing = HighWatermarkCheckpoint(tmp_path, fileops=_FailingRename())
    with pytest.raises(StorageIOError) as info:
        failing.write({("t", 0): 9})
    assert info.value.errno == 28
    assert HighWatermarkCheckpoint(tmp_path).read() == {("t", 0): 5}
