"""The click root group of ``ailurus`` and its global flags.

Global flags (``--brokers``, ``--admin-url``, ``-X key=value``, ``--profile``,
``--format text|json``, ``--debug``) may be given before or after the subcommand:
:func:`main` hoists them to the front of argv before click parses (``--format`` only
when its value is ``text`` or ``json``, so a subcommand's own ``--format TEMPLATE``
keeps working). How connection settings combine with the environment and the
profile: :mod:`broker.cli.settings`.

Adding a command group: a module in ``broker/cli/`` that defines a module-level
``COMMAND`` (a ``click.Command`` or ``click.Group``) is registered automatically;
no edit here is needed. Modules are imported in name order.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from broker.cli.settings import X_HELP

_PACKAGE = "broker.cli"
_SKIP_MODULES = frozenset({"main"})
# commands resolved by importing their own module alone (module name = command name)
_FAST_PATH = frozenset({"serve", "check"})


@dataclass(frozen=True, slots=True, kw_only=True)
class GlobalOptions:
    """The root group's options, available to subcommands as ``ctx.obj``."""

    brokers: str | None
    admin_url: str | None
    format: str
    debug: bool
    x: tuple[str, ...] = ()
    profile: Path | None = None


class _RootGroup(click.Group):
    """Registers the command modules on first lookup (also under CliRunner)."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _FAST_PATH and cmd_name not in self.commands:
            # `ailurus serve` imports only the broker, not the client-side command
            # modules (rich, the Kafka client, snapshot tools): start-up time counts.
            module = importlib.import_module(f"{_PACKAGE}.{cmd_name}")
            command = getattr(module, "COMMAND", None)
            if isinstance(command, click.Command):
                self.add_command(command)
                return command
        _register_commands()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        _register_commands()
        return super().list_commands(ctx)


_EPILOG = """\b
Examples:
  ailurus topic list -X brokers=kafka:9092
  ailurus topic produce orders -X user=alice -X pass=secret \\
      -X sasl.mechanism=SCRAM-SHA-512 -X tls.enabled=true -X tls.ca=ca.pem
  AILURUS_ADMIN_TOKEN=... ailurus snapshot create --topic orders
  ailurus --profile prod.yaml topic consume orders -o -10 -n 10

Precedence of connection settings: flag (-X, --brokers, --admin-url) >
environment (AILURUS_*) > profile (--profile FILE, else
~/.config/ailurus/profile.yaml) > default.
"""


@click.group(
    cls=_RootGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=_EPILOG,
)
@click.option(
    "--brokers",
    envvar="AILURUS_BROKERS",
    default=None,
    help="Comma-separated Kafka bootstrap addresses [default: 127.0.0.1:9092] "
    "(also -X brokers=, env AILURUS_BROKERS).",
)
@click.option(
    "--admin-url",
    envvar="AILURUS_ADMIN_URL",
    default=None,
    help="Base URL of the broker's admin HTTP API [default: http://127.0.0.1:9644] "
    "(also -X admin.hosts=, env AILURUS_ADMIN_URL).",
)
@click.option("-X", "x", multiple=True, metavar="KEY=VALUE", help=X_HELP)
@click.option(
    "--profile",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="AILURUS_PROFILE",
    default=None,
    help="Profile file of connection settings (YAML; env AILURUS_PROFILE) "
    "[default: ~/.config/ailurus/profile.yaml if it exists].",
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
    ctx: click.Context,
    brokers: str | None,
    admin_url: str | None,
    x: tuple[str, ...],
    profile: Path | None,
    output_format: str,
    debug: bool,
) -> None:
    """Ailurus: a Kafka-compatible broker for development, with partition snapshots."""
    # A value click took from the environment is an environment setting, below -X
    # flags and above the profile: broker.cli.settings reads the environment itself.
    if (
        ctx.get_parameter_source("brokers")
        is not click.core.ParameterSource.COMMANDLINE
    ):
        brokers = None
    if (
        ctx.get_parameter_source("admin_url")
        is not click.core.ParameterSource.COMMANDLINE
    ):
        admin_url = None
    ctx.obj = GlobalOptions(
        brokers=brokers,
        admin_url=admin_url,
        format=output_format,
        debug=debug,
        x=x,
        profile=profile,
    )


_registered = False


def _register_commands() -> None:
    global _registered
    if _registered:
        return
    _registered = True
    for info in sorted(_command_modules(), key=lambda i: i.name):
        if info.name in _SKIP_MODULES or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{_PACKAGE}.{info.name}")
        command = getattr(module, "COMMAND", None)
        if isinstance(command, click.Command) and command.name not in cli.commands:
            cli.add_command(command)


def _command_modules() -> list[pkgutil.ModuleInfo]:
    """The modules of the ``broker.cli`` package, found by its spec (not imported)."""
    spec = importlib.util.find_spec(_PACKAGE)
    locations = spec.submodule_search_locations if spec is not None else None
    return list(pkgutil.iter_modules(locations or []))


_VALUE_FLAGS = ("--brokers", "--admin-url", "--format", "--profile", "-X")


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
        if arg.startswith("-X") and len(arg) > 2 and not arg.startswith("-X="):
            front.append(arg)  # -Xkey=value
            i += 1
            continue
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
