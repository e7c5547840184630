"""Time-bounded corpus-mutation fuzzer: ``python -m tests.fuzz.run_fuzz --seconds 60``.

Coverage-guided in the simple way: an input whose run reaches a line pair (arc) no
earlier input reached joins the in-memory corpus and is mutated further. Prints one
JSON line per target: executions, unexpected exceptions (each reproducer is saved to
``tests/fuzz/crashes/``), corpus growth.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from types import FrameType

from tests.fuzz._fuzz import TARGETS, check, corpus, mutate

CRASHES = Path(__file__).parent / "crashes"
_ROOTS = ("/protocol/", "/storage/", "/broker/groups/")


def _traced(
    target: str, data: bytes, arcs: set[tuple[str, int, int]]
) -> BaseException | None:
    last: list[int] = [0]

    def tracer(frame: FrameType, event: str, arg: object) -> object:
        filename = frame.f_code.co_filename
        if not any(root in filename for root in _ROOTS):
            return None
        if event == "line":
            arcs.add((filename, last[0], frame.f_lineno))
            last[0] = frame.f_lineno
        return tracer

    sys.settrace(tracer)
    try:
        return check(TARGETS[target], data)
    finally:
        sys.settrace(None)


def fuzz(
    target: str, *, seconds: float, seed: int = 0, coverage_every: int = 8
) -> dict[str, object]:
    """Mutate the corpus for ``seconds``; every ``coverage_every``-th run is traced."""
    rng = random.Random(seed)
    pool = [data for _, data in corpus(target)]
    initial = len(pool)
    arcs: set[tuple[str, int, int]] = set()
    executions = unexpected = 0
    kinds: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        data = mutate(rng, rng.choice(pool), rng.choice(pool))
        if executions % coverage_every == 0:
            before = len(arcs)
            found = _traced(target, data, arcs)
            if len(arcs) > before and len(pool) < 5000:
                pool.append(data)
        else:
            found = check(TARGETS[target], data)
        executions += 1
        if found is not None:
            unexpected += 1
            kind = type(found).__name__
            kinds[kind] = kinds.get(kind, 0) + 1
            CRASHES.mkdir(exist_ok=True)
            (CRASHES / f"{target}-{kind}-{executions}.bin").write_bytes(data)
    return {
        "target": target,
        "seconds": seconds,
        "executions": executions,
        "unexpected": unexpected,
        "unexpected_kinds": kinds,
        "corpus": initial,
        "corpus_grown_to": len(pool),
        "arcs": len(arcs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", choices=sorted(TARGETS), action="append")
    args = parser.parse_args()
    for target in args.target or sorted(TARGETS):
        print(
            json.dumps(fuzz(target, seconds=args.seconds, seed=args.seed)), flush=True
        )


if __name__ == "__main__":
    main()
