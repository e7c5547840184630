"""The ``ailurus`` command line: the click root group lives in :mod:`broker.cli.main`."""

from broker.cli.main import cli, main

__all__ = ["cli", "main"]
