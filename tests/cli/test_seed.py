"""The seed walk-through, through the installed ``ailurus`` console script."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import time

from tests.cli.conftest import AILURUS, Target, invoke, run_cli, unique


def test_seed_walkthrough_prints_exactly_the_records(target: Target) -> None:
    """Produce two key:value records, consume from offset 0: exactly hello:world, foo:bar."""
    topic = unique("my-topic")
    if target.kind == "tansu":
        # Tansu auto-creates topics with several partitions; the seed assumes one.
        assert run_cli(target, "topic", "create", topic, "-p", "1").returncode == 0
    produced = run_cli(
        target,
        "topic",
        "produce",
        topic,
        "--key-value",
        "hello:world",
        "--key-value",
        "foo:bar",
    )
    assert produced.returncode == 0, produced.stderr
    consumed = run_cli(target, "topic", "consume", topic, "--offset", "0", "--num", "2")
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout == b"hello:world\nfoo:bar\n"
    assert consumed.stderr == b""


def test_produce_reports_partition_and_offset_per_record(target: Target) -> None:
    """Each produced record's partition and offset is printed, as text and as JSON."""
    topic = unique("po")
    assert invoke(target, "topic", "create", topic, "-p", "1").exit_code == 0
    text = invoke(
        target, "topic", "produce", topic, "--key-value", "a:1", "--key-value", "b:2"
    )
    assert text.stdout.decode().splitlines() == [
        "Produced to partition 0 at offset 0",
        "Produced to partition 0 at offset 1",
    ]
    js = invoke(
        target, "--format", "json", "topic", "produce", topic, "--key-value", "c:3"
    )
    assert js.json_lines() == [{"topic": topic, "partition": 0, "offset": 2}]


def test_stdin_lines_are_values_and_key_templates_split(target: Target) -> None:
    """Stdin lines are plain values; ``--format '%k=%v'`` splits at the separator."""
    topic = unique("stdin")
    assert invoke(target, "topic", "create", topic, "-p", "1").exit_code == 0
    assert invoke(target, "topic", "produce", topic, stdin=b"one\ntwo\n").exit_code == 0
    res = invoke(target, "topic", "produce", topic, "-f", "%k=%v\\n", stdin=b"k=v=w\n")
    assert res.exit_code == 0, res.stderr
    out = invoke(target, "topic", "consume", topic, "--until-end", "-f", "%o|%k|%v")
    assert out.stdout == b"0||one\n1||two\n2|k|v=w\n"


def test_consume_offset_specs(target: Target) -> None:
    """start, end, N, -N and @timestamp choose where consumption starts."""
    topic = unique("specs")
    assert invoke(target, "topic", "create", topic, "-p", "1").exit_code == 0
    for i in range(5):
        assert (
            invoke(
                target, "topic", "produce", topic, "--key-value", f"k{i}:v{i}"
            ).exit_code
            == 0
        )

    def values(*args: str) -> list[str]:
        res = invoke(
            target, "topic", "consume", topic, "--until-end", "-f", "%v", *args
        )
        assert res.exit_code == 0, res.stderr
        return res.stdout.decode().split()

    assert values("-o", "start") == ["v0", "v1", "v2", "v3", "v4"]
    assert values("-o", "3") == ["v3", "v4"]
    assert values("-o", "-2") == ["v3", "v4"]
    assert values("-o", "end") == []
    assert values("-o", "@0") == ["v0", "v1", "v2", "v3", "v4"]
    assert values("--num", "2") == ["v0", "v1"]
    if target.kind == "ailurus":
        # Tansu answers a ListOffsets timestamp after the last record with offset 0.
        assert values("-o", "@99999999999999") == []


def test_consume_follows_new_records_until_ctrl_c(ailurus: Target) -> None:
    """Without --num/--until-end, consume prints records as they arrive; Ctrl-C exits 0."""
    topic = unique("follow")
    assert invoke(ailurus, "topic", "create", topic, "-p", "1").exit_code == 0
    proc = subprocess.Popen(
        [str(AILURUS), "topic", "consume", topic],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ailurus.env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        time.sleep(1.0)  # usually long-polling by now; racing is harmless (offset 0)
        assert (
            invoke(
                ailurus, "topic", "produce", topic, "--key-value", "late:arrival"
            ).exit_code
            == 0
        )
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "no record printed within 10 s"
        assert proc.stdout.readline() == b"late:arrival\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_produce_from_a_pipe_sends_each_line_promptly(ailurus: Target) -> None:
    """A line written to an open pipe is produced before the pipe closes (tail -f)."""
    topic = unique("pipe")
    assert invoke(ailurus, "topic", "create", topic, "-p", "1").exit_code == 0
    with subprocess.Popen(
        [str(AILURUS), "topic", "produce", topic],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ailurus.env(),
    ) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(b"first\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        assert ready, "the line was not produced while the pipe was open"
        assert proc.stdout.readline() == b"Produced to partition 0 at offset 0\n"
        proc.stdin.write(b"second")  # no trailing newline: still a record at EOF
        proc.stdin.close()
        assert proc.wait(timeout=15) == 0
    res = invoke(ailurus, "topic", "consume", topic, "--until-end", "-f", "%v")
    assert res.stdout == b"first\nsecond\n"


def test_produce_a_large_file_in_batches(ailurus: Target) -> None:
    """Thousands of stdin lines arrive complete and in order."""
    topic = unique("bulk")
    assert invoke(ailurus, "topic", "create", topic, "-p", "1").exit_code == 0
    lines = b"".join(b"line-%05d\n" % i for i in range(3000))
    res = run_cli(ailurus, "--format", "json", "topic", "produce", topic, stdin=lines)
    assert res.returncode == 0, res.stderr
    offsets = [json.loads(line)["offset"] for line in res.stdout.splitlines()]
    assert offsets == list(range(3000))
    out = invoke(ailurus, "topic", "consume", topic, "--until-end", "-f", "%v")
    assert out.stdout == lines
