"""Every corpus entry goes through its target raising only the target's own errors.

Valid seeds must also be accepted (so the corpus keeps exercising the deep paths),
and every category of bad input must be refused at least once.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.fuzz._fuzz import TARGETS, category, check, corpus


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_corpus_raises_only_allowed_errors(target: str) -> None:
    """Each corpus file decodes or raises the target's documented error, nothing else."""
    t = TARGETS[target]
    entries = corpus(target)
    assert len(entries) >= 30
    tried: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    for name, data in entries:
        assert check(t, data) is None, name
        tried[category(name)] += 1
        try:
            t.run(data)
        except t.allowed:
            refused[category(name)] += 1
    print(f"{target}: tried {dict(tried)}")
    assert refused["valid"] == 0, "a valid seed was refused"
    bad = [c for c in tried if c != "valid" and c not in ("random", "bit-flip")]
    assert bad
    assert all(refused[c] > 0 for c in bad), (tried, refused)
