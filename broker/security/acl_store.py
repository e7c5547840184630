"""Where the ACLs of the ACL APIs live: the store protocol and a single node's file.

:class:`AclStore` is what the authorizer reads (:meth:`~AclStore.bindings`, cheap,
from memory; :attr:`~AclStore.version` changes with every change, so the authorizer
rebuilds its index only then) and what CreateAcls/DeleteAcls write. A single node
keeps its ACLs in ``<data-dir>/security/acls.json`` (:class:`FileAclStore`; mode
0600, replaced atomically, read once when first needed)::

    {"version": 1,
     "acls": [{"resource_type": "topic", "name": "orders", "pattern": "literal",
               "principal": "User:alice", "host": "*", "operation": "read",
               "permission": "allow"}]}

In cluster mode the ACLs live in etcd instead and every broker applies them through
its watch (:mod:`broker.cluster.acls`). Writes run the file write in a worker thread,
one at a time, so the file always holds the latest state.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Protocol

import anyio

from broker.security.acl_binding import AclBinding, AclBindingError, AclFilter
from storage.fileops import DEFAULT_FILEOPS

ACLS_FILE: Final = "security/acls.json"


class AclStoreError(Exception):
    """The ACLs could not be read or written (the APIs answer with its message)."""


class AclStore(Protocol):
    """The ACLs created through the ACL APIs."""

    @property
    def version(self) -> int:
        """Grows with every change of :meth:`bindings`."""
        ...

    def bindings(self) -> Sequence[AclBinding]: ...

    async def create(self, bindings: Sequence[AclBinding]) -> None:
        """Add the bindings (those already present are kept once).

        Raises:
            AclStoreError: nothing could be stored.
        """
        ...

    async def delete(self, filters: Sequence[AclFilter]) -> list[list[AclBinding]]:
        """Remove every binding some filter matches; per filter, what it matched.

        Raises:
            AclStoreError: nothing could be removed.
        """
        ...


class FileAclStore:
    """A single node's ACLs, in memory and in ``<data-dir>/security/acls.json``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._bindings: list[AclBinding] | None = None
        self._version = 0
        self._lock = anyio.Lock()

    @classmethod
    def in_data_dir(cls, data_dir: Path | str) -> FileAclStore:
        return cls(Path(data_dir) / ACLS_FILE)

    @property
    def version(self) -> int:
        return self._version

    def bindings(self) -> Sequence[AclBinding]:
        if self._bindings is None:
            self._bindings = _read(self.path)
            self._version += 1
        return self._bindings

    async def create(self, bindings: Sequence[AclBinding]) -> None:
        async with self._lock:
            current = list(self.bindings())
            known = set(current)
            added = [b for b in dict.fromkeys(bindings) if b not in known]
            if added:
                await self._save([*current, *added])

    async def delete(self, filters: Sequence[AclFilter]) -> list[list[AclBinding]]:
        async with self._lock:
            current = list(self.bindings())
            matched = [[b for b in current if f.matches(b)] for f in filters]
            gone = {b for m in matched for b in m}
            if gone:
                await self._save([b for b in current if b not in gone])
            return matched

    async def _save(self, bindings: list[AclBinding]) -> None:
        data = {"version": 1, "acls": [b.as_json() for b in bindings]}
        raw = json.dumps(data, indent=1).encode() + b"\n"
        try:
            await anyio.to_thread.run_sync(_write, self.path, raw)
        except OSError as e:
            raise AclStoreError(f"cannot write {self.path}: {e}") from e
        self._bindings = bindings
        self._version += 1


def _write(path: Path, raw: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    DEFAULT_FILEOPS.write_file_atomic(str(path), raw, mode=0o600)


def _read(path: Path) -> list[AclBinding]:
    """The bindings of the file (none when it is missing; a bad entry is skipped,
    a file that is not ACL JSON at all raises AclStoreError)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise AclStoreError(f"cannot read {path}: {e}") from e
    try:
        data = json.loads(raw)
        entries = data["acls"] if data.get("version") == 1 else None
        if not isinstance(entries, list):
            raise ValueError("expected version 1 with a list of acls")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise AclStoreError(f"{path}: malformed ACL file: {e}") from e
    out = []
    for entry in entries:
        try:
            out.append(AclBinding.from_json(entry))
        except (AclBindingError, TypeError, AttributeError):
            continue  # a hand-edited bad entry grants nothing
    return list(dict.fromkeys(out))
