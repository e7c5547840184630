"""The click root group of ``ailurus`` and its global flags.

Global flags (``--brokers``, ``--admin-url``, ``--format text|json``, ``--debug``) may
be given before or after the subcommand: :func:`main` hoists them to the front of
argv before click parses (``--format`` only when its value is ``text`` or ``json``,
so a subcommand's own ``--format TEMPLATE`` keeps working).

Adding a command group: a module in ``broker/cli/`` that defines a module-level
``COMMAND`` (a ``click.Command`` or ``click.Group``) is registered automatically;
no edit here is needed. Modules are imported in name order.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from dataclasses import dataclass

import click

_SKIP_MODULES = frozenset({"main"})
# commands resolved by importing their own module alone (module name = command name)
_FAST_PATH = frozenset({"serve", "check"})


@dataclass(frozen=True, slots=True, kw_only=True)
class GlobalOptions:
    """The root group's options, available to subcommands as ``ctx.obj``."""

    brokers: str
    admin_url: str
    format: str
    debug: bool


class _RootGroup(click.Group):
    """Registers the command modules on first lookup (also under CliRunner)."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _FAST_PATH and cmd_name not in self.commands:
            # `ailurus serve` imports only the broker, not the client-side command
            # modules (rich, the Kafka client, snapshot tools): start-up time counts.
            module = importlib.import_module(f"broker.cli.{cmd_name}")
            command = getattr(module, "COMMAND", None)
            if isinstance(command, click.Command):
                self.add_command(command)
                return command
        _register_commands()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        _register_commands()
        return super().list_commands(ctx)


@click.group(cls=_RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--brokers",
    envvar="AILURUS_BROKERS",
    default="127.0.0.1:9092",
    show_default=True,
    help="Comma-separated Kafka bootstrap addresses (env AILURUS_BROKERS).",
)
@click.option(
    "--admin-url",
    envvar="AILURUS_ADMIN_URL",
    default="http://127.0.0.1:9644",
    show_default=True,
    help="Base URL of the broker's admin HTTP API (env AILURUS_ADMIN_URL).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format of commands.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="ailurus", prog_name="ailurus")
@click.pass_context
def cli(
    ctx: click.Context, brokers: str, admin_url: str, output_format: str, debug: bool
) -> None:
    """Ailurus: a Kafka-compatible broker for development, with partition snapshots."""
    ctx.obj = GlobalOptions(
        brokers=brokers, admin_url=admin_url, format=output_format, debug=debug
    )


_registered = False


def _register_commands() -> None:
    global _registered
    if _registered:
        return
    _registered = True
    import broker.cli as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name in _SKIP_MODULES or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"broker.cli.{info.name}")
        command = getattr(module, "COMMAND", None)
        if isinstance(command, click.Command) and command.name not in cli.commands:
            cli.add_command(command)


_VALUE_FLAGS = ("--brokers", "--admin-url", "--format")


def hoist_global_flags(argv: list[str]) -> list[str]:
    """Move global flags found after the subcommand to the front of ``argv``."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        name, eq, value = arg.partition("=")
        if name in _VALUE_FLAGS:
            if not eq:
                if i + 1 >= len(argv):
                    rest.append(arg)
                    break
                value = argv[i + 1]
                consumed = 2
            else:
                consumed = 1
            if name != "--format" or value in ("text", "json"):
                front += [name, value]
            else:
                rest.extend(argv[i : i + consumed])
            i += consumed
            continue
        if arg == "--debug":
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


def main() -> None:
    """Entry point of the ``ailurus`` console script."""
    cli.main(args=hoist_global_flags(sys.argv[1:]), prog_name="ailurus")
