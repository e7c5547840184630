"""Offsite push/pull against a real S3 server (SeaweedFS) and file:// URLs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import s3fs  # type: ignore[import-untyped]
from click.testing import CliRunner

from broker.snapshots.offsite import transfer as offsite
from tests.offsite.conftest import S3Server
from tests.offsite.helpers import SNAP_IDS, TOPIC_ID, tree, write_snapshot


def _s3(server: S3Server) -> s3fs.S3FileSystem:
    return s3fs.S3FileSystem(
        key=server.env["AWS_ACCESS_KEY_ID"],
        secret=server.env["AWS_SECRET_ACCESS_KEY"],
        endpoint_url=server.endpoint,
        skip_instance_cache=True,
    )


def test_s3_chain_round_trips_byte_for_byte(
    aws_env: S3Server, prefix: str, chain: Path, tmp_path: Path
) -> None:
    """A pushed snapshot chain pulls back into a fresh data dir identical, byte for byte."""
    url = aws_env.url(prefix)
    pushed = offsite.push(chain, url, endpoint_url=aws_env.endpoint)
    assert [(r.snapshot_id, r.status) for r in pushed] == [
        (str(s), "pushed") for s in SNAP_IDS
    ]
    assert [
        r.snapshot_id for r in offsite.list_remote(url, endpoint_url=aws_env.endpoint)
    ] == [str(s) for s in SNAP_IDS]
    data_dir = tmp_path / "restore"
    pulled = offsite.pull(url, data_dir, endpoint_url=aws_env.endpoint)
    assert [r.status for r in pulled] == ["pulled"] * 3
    assert tree(data_dir / "snapshots") == tree(chain)


def test_s3_push_is_idempotent(aws_env: S3Server, prefix: str, chain: Path) -> None:
    """Pushing the same snapshots again uploads nothing."""
    url = aws_env.url(prefix)
    offsite.push(chain, url, endpoint_url=aws_env.endpoint)
    again = offsite.push(chain, url, endpoint_url=aws_env.endpoint)
    assert {r.status for r in again} == {"already-present"}
    assert sum(r.bytes_transferred for r in again) == 0


def test_s3_interrupted_upload_is_invisible_then_resumes(
    aws_env: S3Server, prefix: str, tmp_path: Path
) -> None:
    """A push that fails mid-snapshot leaves no meta.json; a re-run uploads only the rest."""
    root = tmp_path / "snapshots"
    write_snapshot(
        root,
        snapshot_id=SNAP_IDS[0],
        base_offset=0,
        count=20,
        extra_files={f"extra-{i}.json": b"{}" * (i + 1) for i in range(3)},
    )
    url = aws_env.url(prefix)
    uploaded: list[str] = []

    class Boom(Exception):
        pass

    def fail_after_two(event: offsite.FileEvent) -> None:
        uploaded.append(event.name)
        if len(uploaded) == 2:
            raise Boom

    with pytest.raises(Boom):
        offsite.push(root, url, endpoint_url=aws_env.endpoint, on_file=fail_after_two)

    fs = _s3(aws_env)
    remote_dir = f"{aws_env.bucket}/{prefix}/{TOPIC_ID}/{SNAP_IDS[0]}"
    names = {p.rsplit("/", 1)[-1] for p in fs.ls(remote_dir)}
    assert set(uploaded) <= names
    assert "meta.json" not in names
    assert offsite.list_remote(url, endpoint_url=aws_env.endpoint) == []
    assert offsite.pull(url, tmp_path / "dd", endpoint_url=aws_env.endpoint) == []

    [resumed] = offsite.push(root, url, endpoint_url=aws_env.endpoint)
    assert resumed.status == "pushed"
    assert resumed.files_skipped == 2
    assert resumed.files_transferred == 2
    offsite.pull(url, tmp_path / "dd", endpoint_url=aws_env.endpoint)
    assert tree(tmp_path / "dd" / "snapshots") == tree(root)


_PUSH_SCRIPT = """
import sys
from pathlib import Path
from broker.snapshots.offsite import transfer as offsite

def report(event):
    print(event.snapshot, event.name, flush=True)

offsite.push(Path(sys.argv[1]), sys.argv[2], endpoint_url=sys.argv[3], on_file=report)
"""


def test_s3_killed_push_never_leaves_a_complete_looking_snapshot(
    aws_env: S3Server, prefix: str, tmp_path: Path
) -> None:
    """SIGKILL at several points of a push: any remote meta.json pulls and verifies."""
    root = tmp_path / "snapshots"
    for i, sid in enumerate(SNAP_IDS):
        write_snapshot(
            root,
            snapshot_id=sid,
            base_offset=i * 400,
            count=400,
            ancestor=SNAP_IDS[i - 1] if i else None,
            value_size=4000,
            extra_files={f"blob-{j}.bin": os.urandom(512 * 1024) for j in range(4)},
        )
    url = aws_env.url(prefix)
    env = {**os.environ, **aws_env.env}
    seen_partial = False
    # 15 files in all (5 per snapshot); kill after the 1st, 6th and 11th upload, while
    # the process goes on uploading the next file.
    for kill_after in (1, 6, 11):
        proc = subprocess.Popen(
            [sys.executable, "-c", _PUSH_SCRIPT, str(root), url, aws_env.endpoint],
            env=env,
            cwd=Path(__file__).parents[2],
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        for _ in range(kill_after):
            assert proc.stdout.readline(), "push ended early"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
        visible = {
            r.snapshot_id
            for r in offsite.list_remote(url, endpoint_url=aws_env.endpoint)
        }
        seen_partial |= len(visible) < len(SNAP_IDS)
        target = tmp_path / f"pull-{kill_after}"
        pulled = offsite.pull(url, target, endpoint_url=aws_env.endpoint)
        assert {r.snapshot_id for r in pulled} == visible
        for sid in visible:
            rel = Path(TOPIC_ID) / sid
            assert tree(target / "snapshots" / rel) == tree(root / rel)
    offsite.push(root, url, endpoint_url=aws_env.endpoint)
    final = tmp_path / "final"
    offsite.pull(url, final, endpoint_url=aws_env.endpoint)
    assert tree(final / "snapshots") == tree(root)
    assert seen_partial


def test_s3_pull_rejects_a_corrupted_segment(
    aws_env: S3Server, prefix: str, chain: Path, tmp_path: Path
) -> None:
    """A segment object altered on the server (same size) is rejected; nothing lands."""
    url = aws_env.url(prefix)
    offsite.push(chain, url, endpoint_url=aws_env.endpoint)
    fs = _s3(aws_env)
    key = f"{aws_env.bucket}/{prefix}/{TOPIC_ID}/{SNAP_IDS[0]}/{0:020d}.log"
    data = bytearray(fs.cat_file(key))
    data[100] ^= 0xFF
    fs.pipe_file(key, bytes(data))

    data_dir = tmp_path / "restore"
    with pytest.raises(offsite.ChecksumMismatch, match=r"00000000000000000000\.log"):
        offsite.pull(url, data_dir, endpoint_url=aws_env.endpoint)
    assert tree(data_dir / "snapshots") == {}
    assert list((data_dir / "snapshots" / TOPIC_ID).iterdir()) == []


def test_s3_pull_rejects_a_corrupted_meta_json(
    aws_env: S3Server, prefix: str, chain: Path, tmp_path: Path
) -> None:
    """A meta.json altered on the server no longer matches the manifest and is rejected."""
    url = aws_env.url(prefix)
    offsite.push(
        chain, url, endpoint_url=aws_env.endpoint, snapshot_ids=[str(SNAP_IDS[0])]
    )
    fs = _s3(aws_env)
    key = f"{aws_env.bucket}/{prefix}/{TOPIC_ID}/{SNAP_IDS[0]}/meta.json"
    meta = json.loads(fs.cat_file(key))
    meta["last_offset"] = 99
    fs.pipe_file(key, json.dumps(meta, indent=2).encode())
    with pytest.raises(offsite.ChecksumMismatch, match=r"meta\.json"):
        offsite.pull(url, tmp_path / "restore", endpoint_url=aws_env.endpoint)
    assert tree(tmp_path / "restore") == {}


def test_s3_push_repairs_a_damaged_remote_snapshot(
    aws_env: S3Server, prefix: str, chain: Path, tmp_path: Path
) -> None:
    """A re-push re-uploads an object that was damaged remotely."""
    url = aws_env.url(prefix)
    offsite.push(chain, url, endpoint_url=aws_env.endpoint)
    fs = _s3(aws_env)
    key = f"{aws_env.bucket}/{prefix}/{TOPIC_ID}/{SNAP_IDS[1]}/group-offsets.json"
    fs.pipe_file(key, b'{"g1": 26}\n')
    results = offsite.push(chain, url, endpoint_url=aws_env.endpoint)
    assert [r.status for r in results] == [
        "already-present",
        "pushed",
        "already-present",
    ]
    assert results[1].files_transferred == 1
    offsite.pull(url, tmp_path / "dd", endpoint_url=aws_env.endpoint)
    assert tree(tmp_path / "dd" / "snapshots") == tree(chain)


def test_push_refuses_a_corrupt_local_snapshot(chain: Path, tmp_path: Path) -> None:
    """A local segment that no longer matches meta.json's crc32c is never shipped."""
    seg = chain / TOPIC_ID / str(SNAP_IDS[0]) / f"{0:020d}.log"
    data = bytearray(seg.read_bytes())
    data[-1] ^= 1
    seg.write_bytes(bytes(data))
    remote = tmp_path / "remote"
    with pytest.raises(offsite.ChecksumMismatch, match="crc32c"):
        offsite.push(chain, remote.as_uri())
    assert offsite.list_remote(remote.as_uri()) == []


def test_file_url_round_trip(chain: Path, tmp_path: Path) -> None:
    """file:// URLs round-trip a chain; the remote holds a manifest beside each meta.json."""
    remote = tmp_path / "remote"
    offsite.push(chain, remote.as_uri())
    snap = remote / TOPIC_ID / str(SNAP_IDS[1])
    assert sorted(p.name for p in snap.iterdir()) == [
        f"{20:020d}.log",
        offsite.MANIFEST_NAME,
        "group-offsets.json",
        "meta.json",
    ]
    results = offsite.pull(remote.as_uri(), tmp_path / "dd")
    assert [r.status for r in results] == ["pulled"] * 3
    assert tree(tmp_path / "dd" / "snapshots") == tree(chain)
    again = offsite.pull(remote.as_uri(), tmp_path / "dd")
    assert [r.status for r in again] == ["already-present"] * 3


def test_pull_refuses_to_overwrite_a_different_local_snapshot(
    chain: Path, tmp_path: Path
) -> None:
    """A local snapshot with the same ID but other content is a conflict, left untouched."""
    remote = tmp_path / "remote"
    offsite.push(chain, remote.as_uri())
    dd = tmp_path / "dd"
    write_snapshot(dd / "snapshots", snapshot_id=SNAP_IDS[0], base_offset=0, count=7)
    before = tree(dd)
    with pytest.raises(offsite.SnapshotConflict):
        offsite.pull(remote.as_uri(), dd)
    assert tree(dd) == before


def test_pull_until_restores_a_point_in_time_prefix_of_the_chain(
    chain: Path, tmp_path: Path
) -> None:
    """``until`` keeps the snapshots taken at or before it (ancestors first)."""
    remote = tmp_path / "remote"
    offsite.push(chain, remote.as_uri())
    results = offsite.pull(remote.as_uri(), tmp_path / "dd", until=SNAP_IDS[1])
    assert [r.snapshot_id for r in results] == [str(SNAP_IDS[0]), str(SNAP_IDS[1])]


def test_pull_of_one_snapshot_brings_its_ancestors(chain: Path, tmp_path: Path) -> None:
    """Asking for the newest incremental pulls the whole chain it depends on."""
    remote = tmp_path / "remote"
    offsite.push(chain, remote.as_uri())
    results = offsite.pull(
        remote.as_uri(), tmp_path / "dd", snapshot_ids=[str(SNAP_IDS[2])]
    )
    assert [r.snapshot_id for r in results] == [str(s) for s in SNAP_IDS]


def test_pull_filters_by_partition(tmp_path: Path) -> None:
    """``partitions`` restores one partition of a multi-partition topic."""
    src = tmp_path / "snapshots"
    for p in range(3):
        write_snapshot(
            src / f"p{p}",
            snapshot_id=SNAP_IDS[0] + p,
            base_offset=0,
            count=3,
            partition=p,
        )
    remote = tmp_path / "remote"
    for p in range(3):
        offsite.push(src / f"p{p}", remote.as_uri())
    results = offsite.pull(remote.as_uri(), tmp_path / "dd", partitions=[1])
    assert [r.snapshot_id for r in results] == [str(SNAP_IDS[0] + 1)]


def test_cli_push_and_pull(chain: Path, tmp_path: Path) -> None:
    """``ailurus snapshot push --to`` and ``pull --from`` work through the CLI."""
    from broker.cli.main import _register_commands, cli

    _register_commands()
    remote = tmp_path / "remote"
    data_dir = chain.parent
    runner = CliRunner()
    out = runner.invoke(
        cli,
        [
            "--format",
            "json",
            "snapshot",
            "push",
            "--to",
            remote.as_uri(),
            "--data-dir",
            str(data_dir),
        ],
    )
    assert out.exit_code == 0, out.output
    assert [r["status"] for r in json.loads(out.stdout)] == ["pushed"] * 3

    listed = runner.invoke(
        cli,
        ["--format", "json", "snapshot", "pull", "--from", remote.as_uri(), "--list"],
    )
    assert listed.exit_code == 0, listed.output
    assert [r["last_offset"] for r in json.loads(listed.stdout)] == [19, 29, 44]

    dd = tmp_path / "dd"
    out = runner.invoke(
        cli,
        [
            "--format",
            "json",
            "snapshot",
            "pull",
            "--from",
            remote.as_uri(),
            "--data-dir",
            str(dd),
            "--until",
            "2023-11-14T22:13:21Z",
        ],
    )
    assert out.exit_code == 0, out.output
    assert [r["snapshot_id"] for r in json.loads(out.stdout)] == [
        str(SNAP_IDS[0]),
        str(SNAP_IDS[1]),
    ]


def test_push_accepts_a_topic_dir_or_one_snapshot_dir(
    chain: Path, tmp_path: Path
) -> None:
    """The source may be a topic directory or a single snapshot directory."""
    topic_remote, one_remote = tmp_path / "topic", tmp_path / "one"
    pushed = offsite.push(chain / TOPIC_ID, topic_remote.as_uri())
    assert [r.snapshot_id for r in pushed] == [str(s) for s in SNAP_IDS]
    [single] = offsite.push(chain / TOPIC_ID / str(SNAP_IDS[1]), one_remote.as_uri())
    assert (single.topic, single.snapshot_id) == (TOPIC_ID, str(SNAP_IDS[1]))
    assert [r.key for r in offsite.list_remote(one_remote.as_uri())] == [
        f"{TOPIC_ID}/{SNAP_IDS[1]}"
    ]


def test_push_skips_dot_directories_in_progress(chain: Path, tmp_path: Path) -> None:
    """A snapshot still being written under a dot-name is not shipped."""
    write_snapshot(
        chain / ".staging", snapshot_id=SNAP_IDS[2] + 1, base_offset=0, count=2
    )
    tmp_snap = chain / TOPIC_ID / f".{SNAP_IDS[2] + 5}.tmp"
    (chain / TOPIC_ID / str(SNAP_IDS[0])).rename(tmp_snap)
    pushed = offsite.push(chain, (tmp_path / "r").as_uri())
    assert [r.snapshot_id for r in pushed] == [str(SNAP_IDS[1]), str(SNAP_IDS[2])]


def test_pull_rejects_hostile_names_and_huge_meta(chain: Path, tmp_path: Path) -> None:
    """A manifest naming ``../x`` or a 2 MiB meta.json is refused; nothing is written."""
    remote = tmp_path / "remote"
    offsite.push(chain, remote.as_uri(), snapshot_ids=[str(SNAP_IDS[0])])
    snap = remote / TOPIC_ID / str(SNAP_IDS[0])
    manifest = json.loads((snap / offsite.MANIFEST_NAME).read_text())
    manifest["files"][0]["name"] = "../escaped.log"
    (snap / offsite.MANIFEST_NAME).write_text(json.dumps(manifest))
    dd = tmp_path / "dd"
    with pytest.raises(offsite.OffsiteError, match="unsafe file name"):
        offsite.pull(remote.as_uri(), dd)
    assert tree(tmp_path / "dd") == {}
    assert not (dd / "snapshots" / "escaped.log").exists()

    (snap / "meta.json").write_bytes(b" " * (2 * 1024 * 1024))
    with pytest.raises(offsite.OffsiteError, match="larger than"):
        offsite.list_remote(remote.as_uri())


def test_pull_refuses_pathological_remote_json(chain: Path, tmp_path: Path) -> None:
    """A remote meta.json or manifest nested 100k levels deep (or with duplicate
    keys) is refused with a clear error; nothing is written."""
    remote = tmp_path / "remote"
    offsite.push(chain, remote.as_uri(), snapshot_ids=[str(SNAP_IDS[0])])
    snap = remote / TOPIC_ID / str(SNAP_IDS[0])
    deep = b"[" * 100_000 + b"]" * 100_000
    manifest = (snap / offsite.MANIFEST_NAME).read_bytes()
    (snap / offsite.MANIFEST_NAME).write_bytes(deep)
    dd = tmp_path / "dd"
    with pytest.raises(offsite.OffsiteError, match="corrupt"):
        offsite.pull(remote.as_uri(), dd)
    assert tree(dd) == {}
    (snap / offsite.MANIFEST_NAME).write_bytes(manifest)
    (snap / "meta.json").write_bytes(deep)
    with pytest.raises(offsite.OffsiteError, match="nested too deeply"):
        offsite.list_remote(remote.as_uri())
    (snap / "meta.json").write_bytes(b'{"partition": 0, "partition": -1}')
    with pytest.raises(offsite.OffsiteError, match="duplicate key 'partition'"):
        offsite.list_remote(remote.as_uri())


def test_pull_keep_going_lands_the_good_snapshots_and_reports_the_bad(
    chain: Path, tmp_path: Path
) -> None:
    """With keep_going one corrupted snapshot is ``rejected``; the others still land."""
    remote = tmp_path / "remote"
    offsite.push(chain, remote.as_uri())
    seg = remote / TOPIC_ID / str(SNAP_IDS[1]) / f"{20:020d}.log"
    data = bytearray(seg.read_bytes())
    data[70] ^= 0x55
    seg.write_bytes(bytes(data))
    results = offsite.pull(remote.as_uri(), tmp_path / "dd", keep_going=True)
    assert [(r.snapshot_id, r.status) for r in results] == [
        (str(SNAP_IDS[0]), "pulled"),
        (str(SNAP_IDS[1]), "rejected"),
        (str(SNAP_IDS[2]), "pulled"),
    ]
    assert "crc32c" in results[1].reason
    landed = sorted(
        p.name for p in (tmp_path / "dd" / "snapshots" / TOPIC_ID).iterdir()
    )
    assert landed == [str(SNAP_IDS[0]), str(SNAP_IDS[2])]

    from broker.cli.main import _register_commands, cli

    _register_commands()
    out = CliRunner().invoke(
        cli,
        [
            "snapshot",
            "pull",
            "--from",
            remote.as_uri(),
            "--data-dir",
            str(tmp_path / "d2"),
            "--keep-going",
        ],
    )
    assert out.exit_code == 1
    assert f"rejected {TOPIC_ID}/{SNAP_IDS[1]}" in out.stderr


def test_cli_push_and_pull_with_s3_endpoint_and_aws_env(
    aws_env: S3Server,
    prefix: str,
    chain: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The CLI takes the endpoint from AILURUS_S3_ENDPOINT_URL or --endpoint-url and the
    credentials from the AWS variables."""
    from broker.cli.main import _register_commands, cli

    _register_commands()
    url = aws_env.url(prefix)
    monkeypatch.setenv("AILURUS_S3_ENDPOINT_URL", aws_env.endpoint)
    runner = CliRunner()
    out = runner.invoke(
        cli,
        ["--format", "json", "snapshot", "push", "--to", url, "--source", str(chain)],
    )
    assert out.exit_code == 0, out.output
    assert [r["status"] for r in json.loads(out.stdout)] == ["pushed"] * 3
    monkeypatch.delenv("AILURUS_S3_ENDPOINT_URL")
    dd = tmp_path / "dd"
    out = runner.invoke(
        cli,
        [
            "snapshot",
            "pull",
            "--from",
            url,
            "--endpoint-url",
            aws_env.endpoint,
            "--data-dir",
            str(dd),
        ],
    )
    assert out.exit_code == 0, out.output
    assert tree(dd / "snapshots") == tree(chain)
