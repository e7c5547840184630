"""A stand-in worker for tests of broker.worker_process (``python -m``).

``python -m tests.broker._worker_stub <parent pid> JOB [ARG]``:

- ``echo``: read stdin, write its length to stdout, ``oops`` to stderr, exit 0;
- ``segv``: die of SIGSEGV at once, before reading stdin (as a worker whose child
  crashed between fork and exec did);
- ``sleep PATH``: write the pid to PATH, then sleep for a minute.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def main(argv: list[str]) -> int:
    job = argv[1]
    if job == "echo":
        data = sys.stdin.buffer.read()
        sys.stdout.write(f"{len(data)}\n")
        sys.stderr.write("oops\n")
        return 0
    if job == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if job == "sleep":
        with open(argv[2] + ".tmp", "w") as fh:
            fh.write(str(os.getpid()))
        os.rename(argv[2] + ".tmp", argv[2])
        time.sleep(60)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
