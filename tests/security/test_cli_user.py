"""``ailurus user``: create, list, grant, revoke and delete users in a data dir."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from broker.cli.main import cli
from broker.security.credentials import UserStore, verify_password


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_user_lifecycle(tmp_path: Path) -> None:
    """Users are created from stdin, listed, granted ACLs, revoked and deleted."""
    d = str(tmp_path)
    code, out, _ = run(
        "user", "create", "alice", "--password-stdin", "--data-dir", d, stdin="s3cret\n"
    )
    assert code == 0, out
    assert "created user alice" in out
    cred = UserStore.in_data_dir(tmp_path).scram_credential("alice", "SCRAM-SHA-512")
    assert cred is not None
    assert verify_password(cred, b"s3cret")

    code, out, _ = run(
        "user",
        "grant",
        "alice",
        "topic:orders:read,write",
        "group:*:read",
        "--data-dir",
        d,
    )
    assert code == 0, out
    code, out, _ = run("--format", "json", "user", "list", "--data-dir", d)
    assert code == 0
    assert json.loads(out) == [
        {
            "user": "alice",
            "mechanisms": ["SCRAM-SHA-256", "SCRAM-SHA-512"],
            "acls": ["topic:orders:read,write", "group:*:read"],
        }
    ]
    code, out, _ = run("user", "revoke", "alice", "group:*:read", "--data-dir", d)
    assert code == 0
    assert out.strip() == "alice: topic:orders:read,write"
    code, out, _ = run("user", "delete", "alice", "--data-dir", d)
    assert code == 0
    assert UserStore.in_data_dir(tmp_path).users() == {}


def test_user_create_with_one_mechanism_and_prompt(tmp_path: Path) -> None:
    """--mechanism limits the stored credentials; the password may be prompted."""
    code, out, _ = run(
        "user",
        "create",
        "bob",
        "--mechanism",
        "SCRAM-SHA-256",
        "--data-dir",
        str(tmp_path),
        stdin="pw\npw\n",
    )
    assert code == 0, out
    record = UserStore.in_data_dir(tmp_path).get("bob")
    assert record is not None
    assert set(record.credentials) == {"SCRAM-SHA-256"}


def test_user_errors_exit_1_with_one_line(tmp_path: Path) -> None:
    """Unknown users, bad ACL specs and empty passwords are errors, not tracebacks."""
    d = str(tmp_path)
    code, _, err = run("user", "delete", "ghost", "--data-dir", d)
    assert code == 1
    assert "no such user: ghost" in err
    assert run("user", "delete", "ghost", "--if-exists", "--data-dir", d)[0] == 0
    code, _, err = run("user", "grant", "ghost", "topic:t:read", "--data-dir", d)
    assert code == 1
    assert "no user 'ghost'" in err
    run("user", "create", "a", "--password", "x", "--data-dir", d)
    code, _, err = run("user", "grant", "a", "topic:t:fly", "--data-dir", d)
    assert code == 1
    assert err.startswith("error: bad ACL")
    code, _, err = run("user", "revoke", "a", "topic:t:read", "--data-dir", d)
    assert code == 1
    code, _, err = run(
        "user", "create", "b", "--password-stdin", "--data-dir", d, stdin="\n"
    )
    assert code == 1
    assert "empty" in err


def test_the_documented_user_commands_run_as_written(tmp_path: Path) -> None:
    """Every ``ailurus user`` line of docs/security.md's Users example succeeds, in
    order, and leaves what it says (revoke takes a rule exactly as granted)."""
    import shlex

    from broker.security.acl import parse_rule

    doc = (Path(__file__).parents[2] / "docs" / "security.md").read_text()
    block = doc.split("## Users", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    lines = [ln.split("#", 1)[0].strip() for ln in block.splitlines()]
    commands = [ln for ln in lines if ln.startswith("ailurus user")]
    assert len(commands) >= 5
    store = UserStore.in_data_dir(tmp_path)
    for line in commands:
        stdin = None
        if "<" in line:
            line, _ = line.split("<", 1)
            stdin = "pw\n"
        args = shlex.split(line)[1:]
        if args[:2] == ["user", "delete"]:  # check the grants before the delete
            record = store.get("alice")
            assert record is not None
            specs = sorted(parse_rule(r).spec() for r in record.acls)
            assert specs == ["group:orders-app:read", "topic:logs-*:all"]
        code, out, err = run(*args, "--data-dir", str(tmp_path), stdin=stdin)
        assert code == 0, (line, out, err)
    assert store.get("alice") is None
