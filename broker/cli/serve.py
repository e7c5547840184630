"""``ailurus serve``: run the broker in the foreground until SIGTERM/SIGINT.

A broker that cannot start prints one line, ``error: <what> (change <setting>)``, on
stderr and exits with the code :mod:`broker.startup` lists; ``--debug`` adds the
traceback. Malformed flags and variables are reported the same way (exit 2).
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import NoReturn

import click

from broker.cli.main import GlobalOptions
from broker.config import ConfigError, parse_set, resolve
from broker.startup import EXIT_CODES_HELP, EXIT_CONFIG, StartupError


def _exit(message: str, exit_code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(exit_code)


class _ServeCommand(click.Command):
    """Reports a malformed flag or variable in one line (exit 2), like other errors."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            message = e.format_message().rstrip(".")
            _exit(f"{message} (see 'ailurus serve --help')", EXIT_CONFIG)


@click.command(
    "serve",
    cls=_ServeCommand,
    epilog="Precedence: flags, then AILURUS_* environment variables, then the "
    "--config file, then defaults. Port 0 binds a free port (see the 'listening' "
    "log events or --ready-file). A listener bound to 0.0.0.0 advertises "
    "127.0.0.1 unless --advertise-kafka-addr says otherwise.\n\n" + EXIT_CODES_HELP,
)
@click.option(
    "--config",
    "config_file",
    envvar="AILURUS_CONFIG",
    show_envvar=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML or TOML file with these settings (flags and env win over it).",
)
@click.option(
    "--data-dir",
    envvar="AILURUS_DATA_DIR",
    show_envvar=True,
    help="Directory holding topics and segments.  [default: ./data]",
)
@click.option(
    "--kafka-addr",
    envvar="AILURUS_KAFKA_ADDR",
    show_envvar=True,
    help="Kafka listeners, [name://]host:port[,...]; port 0 picks a free port. "
    "A listener named plaintext, ssl, sasl_plaintext or sasl_ssl uses that "
    "security protocol.  [default: 127.0.0.1:9092]",
)
@click.option(
    "--advertise-kafka-addr",
    envvar="AILURUS_ADVERTISE_KAFKA_ADDR",
    show_envvar=True,
    help="Addresses clients are told to use, [name://]host:port[,...], matched to "
    "listeners by name (else by position).  [default: the bound address]",
)
@click.option(
    "--admin-addr",
    envvar="AILURUS_ADMIN_ADDR",
    show_envvar=True,
    help="Admin HTTP API address host:port ('none' disables it)."
    "  [default: 127.0.0.1:9644]",
)
@click.option(
    "--node-id",
    envvar="AILURUS_NODE_ID",
    show_envvar=True,
    type=int,
    help="[default: 0]",
)
@click.option(
    "--cluster-id",
    envvar="AILURUS_CLUSTER_ID",
    show_envvar=True,
    help="[default: ailurus-dev]",
)
@click.option(
    "--cluster",
    envvar="AILURUS_CLUSTER",
    show_envvar=True,
    metavar="etcd://HOST:PORT[,HOST:PORT]/PREFIX",
    help="Join the cluster whose brokers register under PREFIX in etcd (needs a "
    "distinct --node-id per broker). Cluster --set keys: "
    "broker.session.timeout.ms [9000], default.replication.factor [1], "
    "offsets.topic.num.partitions [16], offsets.topic.replication.factor [3], "
    "ailurus.cluster.request.timeout.ms [30000].  [default: a single node]",
)
@click.option(
    "--rack",
    envvar="AILURUS_RACK",
    show_envvar=True,
    help="This broker's rack (Kafka's broker.rack); replicas spread across racks.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    envvar="AILURUS_SET",
    show_envvar=True,
    metavar="KEY=VALUE",
    help="A Kafka config: topic defaults (retention.ms, segment.bytes, "
    "max.message.bytes, ...) or broker settings (auto.create.topics.enable, "
    "num.partitions, connections.max.idle.ms, socket.request.max.bytes, "
    "queued.max.request.bytes, max.connections, message.max.bytes; security: "
    "listener.security.protocol.map, sasl.enabled.mechanisms, super.users, "
    "authorizer.enabled; snapshots: snapshot.scan.interval.ms [5000], "
    "snapshot.settle.ms [2000], snapshot.ingest.bytes.per.sec [0: unlimited], "
    "snapshot.schedule.topics [globs; empty: off], snapshot.schedule.interval [1h], "
    "snapshot.schedule.full_every [24], snapshot.schedule.compression [none], "
    "snapshot.schedule.with_group_offsets [false], snapshot.schedule.push_url, "
    "snapshot.schedule.push_endpoint_url, snapshot.retention.keep_last, "
    "snapshot.retention.max_age; each snapshot key is also read from "
    "AILURUS_<KEY> in upper case with _ for ., e.g. "
    "AILURUS_SNAPSHOT_SCHEDULE_TOPICS). Repeatable.",
)
@click.option(
    "--log-level",
    envvar="AILURUS_LOG_LEVEL",
    show_envvar=True,
    type=click.Choice(["debug", "info", "warning", "error", "critical"]),
    help="[default: info]",
)
@click.option(
    "--log-format",
    envvar="AILURUS_LOG_FORMAT",
    show_envvar=True,
    type=click.Choice(["auto", "console", "json"]),
    help="auto: console on a terminal, JSON lines otherwise.  [default: auto]",
)
@click.option(
    "--ready-file",
    envvar="AILURUS_READY_FILE",
    show_envvar=True,
    type=click.Path(dir_okay=False),
    help="Write a JSON file with the bound addresses once the broker is ready.",
)
@click.option(
    "--admin-token",
    envvar="AILURUS_ADMIN_TOKEN",
    show_envvar=True,
    help="Bearer token required by mutating admin API requests; required when "
    "--admin-addr is beyond loopback. Prefer the environment variable (flags "
    "show in the process list).",
)
@click.option(
    "--tls-cert",
    envvar="AILURUS_TLS_CERT",
    show_envvar=True,
    type=click.Path(dir_okay=False),
    help="PEM certificate (chain) for ssl/sasl_ssl listeners.",
)
@click.option(
    "--tls-key",
    envvar="AILURUS_TLS_KEY",
    show_envvar=True,
    type=click.Path(dir_okay=False),
    help="PEM private key of --tls-cert.",
)
@click.option(
    "--tls-ca",
    envvar="AILURUS_TLS_CA",
    show_envvar=True,
    type=click.Path(dir_okay=False),
    help="PEM CA bundle that signs client certificates.",
)
@click.option(
    "--tls-client-auth",
    envvar="AILURUS_TLS_CLIENT_AUTH",
    show_envvar=True,
    type=click.Choice(["none", "requested", "required"]),
    help="Client certificates on ssl listeners (Kafka's ssl.client.auth)."
    "  [default: none]",
)
@click.pass_context
def serve(
    ctx: click.Context,
    /,
    config_file: Path | None,
    sets: tuple[str, ...],
    **flags: object,
) -> None:
    """Run the broker in the foreground (SIGTERM/SIGINT stop it cleanly)."""
    options = ctx.find_object(GlobalOptions)
    debug = options is not None and options.debug
    if debug and flags.get("log_level") is None:
        flags["log_level"] = "debug"
    try:
        config = resolve(flags=flags, sets=parse_set(sets), config_file=config_file)
    except ConfigError as e:
        _fail(str(e), EXIT_CONFIG, debug=debug)
    from broker.server import run

    try:
        code = run(config)
    except StartupError as e:
        _fail(str(e), e.exit_code, debug=debug)
    raise SystemExit(code)


def _fail(message: str, exit_code: int, *, debug: bool) -> NoReturn:
    """Stop with ``error: MESSAGE``; the traceback first when ``--debug`` is on."""
    if debug:
        traceback.print_exc()
    _exit(message, exit_code)


COMMAND = serve
