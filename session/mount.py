"""The superblock: file systems of one mount, keyed by fsid (RFC 8881 sections 5.8.1.9, 11).

A mount starts at one export path and may cross into other file systems (a different
``fsid`` below a directory).  Each ``FileSystem`` records which server currently serves
it; migration changes that binding and nothing else (DESIGN.md invariant 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from session.xdr.nfs4 import fsid4


@dataclass(slots=True)
class FileSystem:
    """One file system as the client knows it.

    Attributes:
        fsid: the server's fsid4 for it (the superblock key).
        root_fh: filehandle of the first directory the client saw on it.
        path: its path in the server's namespace, as components.
        server: "host:port" of the server currently serving it.
        history: (time in seconds since the epoch, "from -> to", note) per move.
    """

    fsid: fsid4
    root_fh: bytes
    path: list[str]
    server: str
    history: list[tuple[float, str, str]] = field(default_factory=list)


@dataclass(slots=True)
class Superblock:
    """Every file system the mount has seen, by fsid."""

    export_path: list[str]
    filesystems: dict[fsid4, FileSystem] = field(default_factory=dict)

    def note(self, fsid: fsid4, fh: bytes, path: list[str], server: str) -> FileSystem:
        """The FileSystem for ``fsid``, recorded on first sight with ``fh`` as its root."""
        fs = self.filesystems.get(fsid)
        if fs is None:
            fs = FileSystem(fsid=fsid, root_fh=fh, path=path, server=server)
            self.filesystems[fsid] = fs
        return fs


def split_path(path: str) -> list[str]:
    """``"/export/a/"`` -> ``["export", "a"]`` (pathname4 components)."""
    return [c for c in path.split("/") if c]
