"""The superblock: file systems of one mount, keyed by (server, fsid) (RFC 8881 5.8.1.9, 11).

A mount starts at one export path and may cross into other file systems (a different
``fsid`` below a directory, or a referral to another server).  An fsid is unique only
within one server (section 5.8.1.9): two exports of one disk on two servers may report
the same fsid, so a file system is found by the server it was seen on *and* its fsid
(DESIGN.md invariant 9), and everything else the mount keeps about it (inode numbers,
open state, routing, recovery) uses the superblock's own number for it, ``fs_id``.

Each ``FileSystem`` records which server serves it now.  Migration rebinds it
(``Superblock.rebind``): the same object, the same ``fs_id``, found from then on under
the destination's (server, fsid) (DESIGN.md invariant 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from session.xdr.nfs4 import fsid4

#: (server "host:port", fsid): how a server names a file system.
ServerFsid = tuple[str, fsid4]


@dataclass(slots=True)
class FileSystem:
    """One file system as the client knows it.

    Attributes:
        fs_id: the superblock's number for it (stable for the mount, across migrations).
        fsid: the fsid4 its current server reports for it.
        root_fh: filehandle of the first directory the client saw on it.
        path: its path in the server's namespace, as components.
        server: "host:port" of the server currently serving it.
        history: (time in seconds since the epoch, "from -> to", note) per move.
    """

    fs_id: int
    fsid: fsid4
    root_fh: bytes
    path: list[str]
    server: str
    history: list[tuple[float, str, str]] = field(default_factory=list)


@dataclass(slots=True)
class Superblock:
    """Every file system the mount has seen, by ``fs_id`` and by (server, fsid)."""

    export_path: list[str]
    filesystems: dict[int, FileSystem] = field(default_factory=dict)
    _by_server: dict[ServerFsid, FileSystem] = field(default_factory=dict)

    def find(self, server: str, fsid: fsid4) -> FileSystem | None:
        """The file system ``server`` calls ``fsid``, if known."""
        return self._by_server.get((server, fsid))

    def note(self, server: str, fsid: fsid4, fh: bytes, path: list[str]) -> FileSystem:
        """The file system ``server`` calls ``fsid``; recorded on first sight with ``fh``
        as its root and a new ``fs_id``."""
        fs = self._by_server.get((server, fsid))
        if fs is None:
            fs = FileSystem(
                fs_id=len(self.filesystems) + 1, fsid=fsid, root_fh=fh, path=path, server=server
            )
            self.filesystems[fs.fs_id] = fs
            self._by_server[(server, fsid)] = fs
        return fs

    def rebind(self, fs: FileSystem, server: str, fsid: fsid4 | None = None) -> None:
        """``fs`` is served by ``server`` now (migration or a path change), as ``fsid``
        (its fsid there; by default unchanged).  The old name is forgotten."""
        if self._by_server.get((fs.server, fs.fsid)) is fs:
            del self._by_server[(fs.server, fs.fsid)]
        fs.server = server
        if fsid is not None:
            fs.fsid = fsid
        self._by_server[(server, fs.fsid)] = fs


def split_path(path: str) -> list[str]:
    """``"/export/a/"`` -> ``["export", "a"]`` (pathname4 components)."""
    return [c for c in path.split("/") if c]
