"""``MetadataCache.memo``: a derived value is built once per version of the cache."""

from __future__ import annotations

from broker.cluster.cache import MetadataCache
from broker.cluster.keys import Keys
from broker.cluster.store import Event


def test_a_memo_is_built_once_until_the_cache_changes() -> None:
    """Two reads build once; a watched change (any key) builds again."""
    cache = MetadataCache(Keys("/t"), 1, "c")
    builds: list[int] = []

    def build() -> int:
        builds.append(cache.version)
        return len(builds)

    assert cache.memo("k", build) == 1
    assert cache.memo("k", build) == 1
    assert cache.memo("other", build) == 2
    cache.apply(
        [Event(key="/t/admin/x", value=b"{}", create_revision=5, mod_revision=5)]
    )
    assert cache.memo("k", build) == 3
    assert cache.memo("k", build) == 3
    assert builds == [0, 0, 1]
