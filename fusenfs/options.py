"""Mount options: ``-o`` strings parsed and checked (names as in nfs(5) and mount.fuse).

A bad option is a ``MountOptionError`` naming the option, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class MountOptionError(ValueError):
    """An unknown option, a bad value, or an unsupported combination."""


@dataclass(slots=True)
class MountOptions:
    """Parsed mount options.

    Attributes:
        port: the server's TCP port.
        sec: the RPC security flavour (``sys`` only, for now).
        ro: mount read-only.
        rsize / wsize: caps on READ / WRITE sizes in bytes (0: the server's maximum).
        timeo: seconds to wait for a reply before re-sending (nfs(5) gives tenths).
        retrans: re-sends before a call fails with ETIMEDOUT.
        acregmin / acregmax / acdirmin / acdirmax: attribute cache bounds in seconds.
        allow_other: let users other than the mounter use the mount.
        foreground: stay in the foreground instead of daemonizing.
        debug: log one line per COMPOUND each way.
        local_lock: which application locks stay local to the mount instead of
            becoming NFS locks: "none", "posix", "flock" or "all" (nfs(5); ``nolock``
            is ``local_lock=all``).
        lookupcache: which lookups the kernel may cache: "all" (names found and names
            missing), "positive" (found only) or "none" (nfs(5) lookupcache).
    """

    port: int = 2049
    sec: str = "sys"
    ro: bool = False
    rsize: int = 0
    wsize: int = 0
    timeo: float = 60.0
    retrans: int = 3
    acregmin: float = 3.0
    acregmax: float = 60.0
    acdirmin: float = 30.0
    acdirmax: float = 60.0
    allow_other: bool = False
    foreground: bool = False
    debug: bool = False
    local_lock: str = "none"
    lookupcache: str = "all"
    unknown: list[str] = field(default_factory=list)


_INT_OPTIONS = {"port", "rsize", "wsize", "retrans"}
_SECONDS_OPTIONS = {"acregmin", "acregmax", "acdirmin", "acdirmax"}
_FLAGS = {"ro", "allow_other", "foreground", "debug"}
_IGNORED = {
    "rw",
    "hard",
    "tcp",
    "proto=tcp",
    "vers=4.1",
    "nfsvers=4.1",
    "minorversion=1",
    "defaults",
    "nodev",
    "nosuid",
    "noexec",
    "exec",
    "dev",
    "suid",
    "_netdev",
    "noauto",
    "auto",
    "user",
    "nouser",
    "bg",
    "fg",
}


def _number(name: str, value: str, low: int, high: int) -> int:
    try:
        n = int(value, 10)
    except ValueError:
        raise MountOptionError(f"mount option {name}={value!r}: not a whole number") from None
    if not low <= n <= high:
        raise MountOptionError(f"mount option {name}={n}: must be between {low} and {high}")
    return n


def parse_options(text: str, base: MountOptions | None = None) -> MountOptions:
    """Parse ``"port=2049,ro,actimeo=5"`` into ``MountOptions``.

    Raises:
        MountOptionError: an unknown option, a flag given a value, or a bad number.
    """
    opts = base or MountOptions()
    for raw in filter(None, (part.strip() for part in text.split(","))):
        if raw in _IGNORED:
            continue
        name, sep, value = raw.partition("=")
        if name in ("vers", "nfsvers") and value not in ("4.1",):
            raise MountOptionError(f"mount option {raw}: fusenfs speaks NFS version 4.1 only")
        if name in _FLAGS:
            if sep:
                raise MountOptionError(f"mount option {name} takes no value")
            setattr(opts, name, True)
        elif name == "fg":
            opts.foreground = True
        elif name == "nolock" and not sep:
            opts.local_lock = "all"
        elif name == "lock" and not sep:
            opts.local_lock = "none"
        elif name == "lookupcache":
            value = {"pos": "positive"}.get(value, value)
            if value not in ("all", "positive", "none"):
                raise MountOptionError(
                    f"mount option lookupcache={value}: must be all, positive (pos) or none"
                )
            opts.lookupcache = value
        elif name == "local_lock":
            if value not in ("none", "posix", "flock", "all"):
                raise MountOptionError(
                    f"mount option local_lock={value}: must be none, posix, flock or all"
                )
            opts.local_lock = value
        elif not sep:
            raise MountOptionError(f"unknown mount option {name!r}")
        elif name == "port":
            opts.port = _number(name, value, 1, 65535)
        elif name in ("rsize", "wsize"):
            setattr(opts, name, _number(name, value, 4096, 64 * 1024 * 1024))
        elif name == "retrans":
            opts.retrans = _number(name, value, 0, 100)
        elif name == "timeo":
            opts.timeo = _number(name, value, 1, 36000) / 10  # tenths of a second
        elif name in _SECONDS_OPTIONS:
            setattr(opts, name, float(_number(name, value, 0, 86400)))
        elif name == "actimeo":
            seconds = float(_number(name, value, 0, 86400))
            opts.acregmin = opts.acregmax = opts.acdirmin = opts.acdirmax = seconds
        elif name == "sec":
            if value != "sys":
                raise MountOptionError(f"mount option sec={value}: only sec=sys is supported")
            opts.sec = value
        else:
            raise MountOptionError(f"unknown mount option {name!r}")
    return opts


def parse_server_spec(spec: str) -> tuple[str, str]:
    """``"127.0.0.1:/export"`` -> ``("127.0.0.1", "/export")``; ``[::1]:/x`` for IPv6.

    Raises:
        MountOptionError: no ``:/path`` part, or an empty host.
    """
    if spec.startswith("["):
        host, sep, rest = spec[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise MountOptionError(f"bad server spec {spec!r}: expected [ADDR]:/PATH")
        path = rest[1:]
    else:
        host, sep, path = spec.rpartition(":")
        if not sep:
            raise MountOptionError(f"bad server spec {spec!r}: expected SERVER:/PATH")
    if not host:
        raise MountOptionError(f"bad server spec {spec!r}: no server name")
    if not path.startswith("/"):
        raise MountOptionError(f"bad server spec {spec!r}: the path must start with /")
    return host, path
