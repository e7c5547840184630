"""The ``ailurus`` command line (placeholder until the broker lands)."""

import sys


def main() -> None:
    """Entry point of the ``ailurus`` console script."""
    sys.stderr.write("ailurus: the broker is not implemented yet (see issue 4)\n")
    raise SystemExit(2)
