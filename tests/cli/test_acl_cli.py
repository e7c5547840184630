"""``ailurus acl``: arguments checked before any broker is asked (one-line errors)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from broker.cli.main import cli

# nothing listens there: a command that got past its checks would say "unreachable"
NOWHERE = ["-X", "brokers=127.0.0.1:1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["acl", "delete"], "pass --all to delete every ACL"),
        (
            ["acl", "create", "--principal", "User:a", "--operation", "read"],
            "name a resource",
        ),
        (
            ["acl", "create", "--principal", "User:a", "--operation", "read",
             "--topic", "t", "--group", "g"],
            "give one of --topic",
        ),
        (["acl", "list", "--topic", "t", "--prefixed", "--match"], "not both"),
        (["acl", "list", "--allow", "--deny"], "not both"),
    ],
)  # fmt: skip
def test_bad_arguments_are_one_line_errors(args: list[str], message: str) -> None:
    """Each mistake is named on one line, exit status 1, no broker contacted."""
    result = CliRunner().invoke(cli, [*NOWHERE, *args])
    assert result.exit_code == 1
    assert message in result.output
    assert "unreachable" not in result.output


def test_unknown_operation_is_refused_by_click() -> None:
    """An operation that is not Kafka's is a usage error listing the valid ones."""
    result = CliRunner().invoke(
        cli, [*NOWHERE, "acl", "create", "--principal", "User:a", "--operation",
              "fly", "--topic", "t"]
    )  # fmt: skip
    assert result.exit_code == 2
    assert "describe_configs" in result.output
