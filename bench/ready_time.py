"""Start-up time of `python -m broker serve` with an empty data dir.

Spawns the broker ``--runs`` times (fresh temp data dir each time, port 0, admin API
off) and measures the wall time from spawn until its ``--ready-file`` exists, plus
the CPU time the process used until then (``/proc/<pid>/stat``). Prints the median,
min and max.

    .venv/bin/python bench/ready_time.py --runs 7
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one() -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as d:
        ready = Path(d) / "ready.json"
        args = [sys.executable, "-m", "broker", "serve", "--data-dir", f"{d}/data"]
        args += ["--kafka-addr", "127.0.0.1:0", "--admin-addr", "none"]
        args += ["--ready-file", str(ready), "--log-format", "json"]
        start = time.perf_counter()
        proc = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            while not ready.exists():
                if time.perf_counter() - start > 30 or proc.poll() is not None:
                    raise SystemExit("broker did not become ready")
                time.sleep(0.002)
            wall = time.perf_counter() - start
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1]
            utime, stime = (int(x) for x in fields.split()[11:13])
            cpu = (utime + stime) / os.sysconf("SC_CLK_TCK")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    ns = parser.parse_args()
    runs = [one() for _ in range(ns.runs)]
    walls = [w for w, _ in runs]
    print(
        f"ready s: median {statistics.median(walls):.3f} min {min(walls):.3f} "
        f"max {max(walls):.3f}; CPU s until ready: median "
        f"{statistics.median(c for _, c in runs):.2f}; runs "
        + " ".join(f"{w:.3f}" for w in walls)
    )


if __name__ == "__main__":
    main()
