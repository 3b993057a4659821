"""Mount options: ``-o`` strings parsed and checked (names as in mount(8) and nfs(5)).

Four kinds, all in one comma-separated list (later options override earlier ones, as
with mount(8)):

- mount(8)'s generic options that are kernel mount flags: ``ro``/``rw``,
  ``exec``/``noexec``, ``suid``/``nosuid``, ``dev``/``nodev``, ``sync``/``async``,
  ``dirsync``, ``atime``/``noatime``/``relatime``.  They are set on the FUSE mount and
  show in /proc/mounts.
- mount(8)'s own options: ``auto``/``noauto``, ``_netdev``, ``nofail``, ``defaults``,
  ``user``/``users``/``nouser``/``owner``/``group``, ``user=NAME``, ``comment=...`` and
  every ``x-*`` option.  They tell mount(8) and systemd when and by whom to mount and
  are kept for the record; as mount(8) says, ``user`` and ``users`` imply ``noexec,
  nosuid,nodev`` and ``owner`` and ``group`` imply ``nosuid,nodev``, unless a later
  option says otherwise.
- nfs(5) options, each with the meaning nfs(5) gives it, or refused with a reason.
- fusenfs's own: ``allow_other``, ``foreground``, ``debug``, and for Kerberos the
  machine credential's ``keytab=PATH`` and ``principal=NAME``.

A bad option is a ``MountOptionError`` naming the option and saying why, never a
traceback; an option fusenfs cannot honour is refused, never silently ignored (with
mount(8)'s ``-s``, "sloppy", unknown names are kept in ``MountOptions.ignored`` for the
caller to warn about instead).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from session.gss import SecFlavor, parse_sec

#: nfs(5) defaults for NFS over TCP.
DEFAULT_TIMEO_TENTHS = 600
DEFAULT_RETRANS = 2
#: nfs(5): minutes a foreground mount retries, and a background one.
DEFAULT_RETRY_FG = 2
DEFAULT_RETRY_BG = 10000
#: Linux's limits: nconnect at most 16, timeo at most 600 s for TCP.
MAX_NCONNECT = 16
MAX_TIMEO_TENTHS = 6000
#: rsize / wsize bounds, bytes (values are rounded down to a multiple of 1024 as nfs(5)).
MIN_IOSIZE = 1024
MAX_IOSIZE = 64 * 1024 * 1024
#: NAME_MAX: the longest name any Linux file system hands to the kernel, bytes.
NAME_MAX = 255


class MountOptionError(ValueError):
    """An unknown option, a bad value, or an unsupported combination."""


@dataclass(slots=True)
class MountOptions:
    """Parsed mount options.

    Attributes:
        port: the server's TCP port.
        sec: nfs(5)'s security flavours in the user's order of preference, as a
            colon list (``"krb5p:krb5i:krb5:sys"``; ``sec_flavours`` parses it).  The
            mount uses the first the server offers for each file system (RFC 8881
            sections 2.6, 18.29, 18.45).
        keytab: the keytab of the machine credential for Kerberos mounts (a path,
            ``FILE:`` allowed); "" is the default, ``$KRB5_CLIENT_KTNAME`` or
            ``/etc/krb5.keytab`` (``session.gss.machine_source``).
        principal: the machine credential's principal (``host/client.example.org``,
            the default realm if none is given); "" is the default, ``host/FQDN``.
        ro: mount read-only.
        rsize / wsize: caps on READ / WRITE sizes in bytes (0: the server's maximum).
        timeo: seconds to wait for a reply before re-sending (nfs(5) gives tenths).
        retrans: re-sends before a major timeout (a count); the retry budget is
            ``timeo * (retrans + 1)`` seconds.
        hard: at a major timeout keep trying (nfs(5) ``hard``, the default); else fail
            the call: with EIO (``soft``), or ETIMEDOUT (``softerr``).
        softerr: with ``hard`` off, fail with ETIMEDOUT instead of EIO.
        intr: ``intr``/``nointr`` as given (no effect, as on Linux since 2.6.25: a
            waiting process can always be killed).
        acregmin / acregmax / acdirmin / acdirmax: attribute cache bounds in seconds.
        noac: no attribute caching, whatever the times say, and synchronous writes
            (nfs(5) ``noac``).
        lookupcache: which lookups the kernel may cache: "all" (names found and names
            missing), "positive" (found only) or "none" (nfs(5) lookupcache).
        cto: close-to-open consistency: every open revalidates (nfs(5) ``cto``).
        delegations: accept the delegations the server offers (``deleg``, the
            default); ``nodeleg`` declines them (OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
            RFC 8881 section 10).
        local_lock: which application locks stay local to the mount instead of
            becoming NFS locks: "none", "posix", "flock" or "all" (nfs(5); ``nolock``
            is ``local_lock=all``).
        bg: retry a failed mount in the background (the command returns at once).
        retry: minutes to keep retrying a mount that failed for a reason that may pass
            (None: 2 in the foreground, 10000 in the background, as nfs(5)).
        nconnect: TCP connections to the server, all bound to the session.
        clientaddr: the client address given (accepted, not needed: callbacks come
            over the client's own connection, RFC 8881 section 2.10.3.1).
        namlen: the longest name component in bytes (nfs(5) ``namlen``; at most 255):
            longer names get ENAMETOOLONG and statfs reports it as f_namemax.
        noexec / suid / dev / sync / dirsync / noatime: kernel mount flags; ``suid``,
            ``dev`` and ``sync`` are None when not given (then the defaults apply: see
            ``kernel_flags``).
        allow_other: let users other than the mounter use the mount.
        foreground: stay in the foreground instead of daemonizing.
        debug: log one line per COMPOUND each way.
        via_mount8: set by the caller when mount(8) runs fusenfs (``mount -t``, fstab):
            then ``suid`` and ``dev`` default to on, as mount(8) and mount.fuse3 make
            them; ``fusenfs mount`` keeps FUSE's default, off.
        mount8: mount(8)'s own options seen (``_netdev``, ``nofail``...), in order.
        ignored: unknown options skipped under mount(8)'s sloppy ``-s``.
    """

    port: int = 2049
    sec: str = "sys"
    keytab: str = ""
    principal: str = ""
    ro: bool = False
    rsize: int = 0
    wsize: int = 0
    timeo: float = DEFAULT_TIMEO_TENTHS / 10
    retrans: int = DEFAULT_RETRANS
    hard: bool = True
    softerr: bool = False
    intr: bool = True
    acregmin: float = 3.0
    acregmax: float = 60.0
    acdirmin: float = 30.0
    acdirmax: float = 60.0
    noac: bool = False
    lookupcache: str = "all"
    cto: bool = True
    delegations: bool = True
    local_lock: str = "none"
    bg: bool = False
    retry: int | None = None
    nconnect: int = 1
    clientaddr: str = ""
    namlen: int = NAME_MAX
    noexec: bool = False
    suid: bool | None = None
    dev: bool | None = None
    sync: bool | None = None
    dirsync: bool = False
    noatime: bool = False
    allow_other: bool = False
    foreground: bool = False
    debug: bool = False
    via_mount8: bool = False
    mount8: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def retry_minutes(self) -> int:
        """Minutes a failed mount is retried (``retry``, or nfs(5)'s default)."""
        if self.retry is not None:
            return self.retry
        return DEFAULT_RETRY_BG if self.bg else DEFAULT_RETRY_FG

    @property
    def sec_flavours(self) -> list[SecFlavor]:
        """``sec`` as flavours, most preferred first (``sec`` was checked when parsed)."""
        return parse_sec(self.sec)

    @property
    def kerberos(self) -> bool:
        """Some flavour in ``sec`` is Kerberos: the mount needs a machine credential."""
        return any(f is not SecFlavor.SYS for f in self.sec_flavours)

    @property
    def budget(self) -> float:
        """Seconds from a call's first try to its major timeout: timeo * (retrans + 1)."""
        return self.timeo * (self.retrans + 1)

    @property
    def synchronous(self) -> bool:
        """Writes reach the server before write(2) returns: ``sync``, or ``noac``
        unless ``async`` was given (nfs(5): noac makes writes synchronous)."""
        return self.sync if self.sync is not None else self.noac

    def cache_times(self) -> tuple[float, float, float, float]:
        """(acregmin, acregmax, acdirmin, acdirmax) in seconds; all 0 with ``noac``."""
        if self.noac:
            return 0.0, 0.0, 0.0, 0.0
        return self.acregmin, self.acregmax, self.acdirmin, self.acdirmax

    def kernel_flags(self) -> list[str]:
        """The kernel mount flags for the FUSE mount, as libfuse option words.

        FUSE mounts are ``nosuid,nodev`` unless asked otherwise; through mount(8)
        ``suid`` and ``dev`` default to on (mount(8)'s ``defaults``, which mount.fuse3
        passes on for every FUSE file system).
        """
        words = ["ro" if self.ro else "rw"]
        if self.noexec:
            words.append("noexec")
        suid = self.suid if self.suid is not None else self.via_mount8
        dev = self.dev if self.dev is not None else self.via_mount8
        words.append("suid" if suid else "nosuid")
        words.append("dev" if dev else "nodev")
        if self.synchronous:
            words.append("sync")
        if self.dirsync:
            words.append("dirsync")
        if self.noatime:
            words.append("noatime")
        return words

    def describe(self, rsize: int | None = None, wsize: int | None = None) -> str:
        """The options in effect, as mountstats' ``opts:`` line shows a kernel mount's
        (``rsize``/``wsize``: the negotiated sizes, when known)."""
        regmin, regmax, dirmin, dirmax = self.cache_times()
        sizes = [
            f"{label}={size}"
            for label, size in (("rsize", rsize or self.rsize), ("wsize", wsize or self.wsize))
            if size
        ]
        words = [
            *self.kernel_flags(),
            "vers=4.1",
            *sizes,
            f"namlen={self.namlen}",
            f"acregmin={regmin:g}",
            f"acregmax={regmax:g}",
            f"acdirmin={dirmin:g}",
            f"acdirmax={dirmax:g}",
            "hard" if self.hard else ("softerr" if self.softerr else "soft"),
            "noac" if self.noac else "ac",
            "cto" if self.cto else "nocto",
            "deleg" if self.delegations else "nodeleg",
            "proto=tcp",
            f"nconnect={self.nconnect}",
            f"port={self.port}",
            f"timeo={round(self.timeo * 10)}",
            f"retrans={self.retrans}",
            f"sec={self.sec}",
            f"lookupcache={self.lookupcache}",
            f"local_lock={self.local_lock}",
        ]
        if self.keytab:
            words.append(f"keytab={self.keytab}")
        if self.principal:
            words.append(f"principal={self.principal}")
        if self.clientaddr:
            words.append(f"clientaddr={self.clientaddr}")
        if self.allow_other:
            words.append("allow_other")
        return ",".join(words)


# ---------------------------------------------------------------------- values

_DIGITS = re.compile(r"[0-9]{1,12}")


def whole_number(name: str, value: str, low: int, high: int) -> int:
    """``value`` as a decimal whole number in ``low..high``: digits only (no sign, no
    ``_``, no spaces), as mount.nfs reads them.

    Raises:
        MountOptionError: naming the option, the value and the rule.
    """
    if not _DIGITS.fullmatch(value):
        raise MountOptionError(
            f"mount option {name}={value!r}: not a whole number (decimal digits only)"
        )
    n = int(value, 10)
    if not low <= n <= high:
        raise MountOptionError(f"mount option {name}={n}: must be between {low} and {high}")
    return n


def _port(opts: MountOptions, name: str, value: str) -> None:
    # nfs(5), NFSv4: port=0 means the standard port, 2049, without asking rpcbind.
    opts.port = whole_number(name, value, 0, 65535) or 2049


def _iosize(opts: MountOptions, name: str, value: str) -> None:
    n = whole_number(name, value, MIN_IOSIZE, MAX_IOSIZE)
    setattr(opts, name, n - n % 1024)  # nfs(5): rounded down to a multiple of 1024


def _timeo(opts: MountOptions, name: str, value: str) -> None:
    opts.timeo = whole_number(name, value, 1, MAX_TIMEO_TENTHS) / 10  # tenths of a second


def _retrans(opts: MountOptions, name: str, value: str) -> None:
    opts.retrans = whole_number(name, value, 0, 100)


def _cache_time(opts: MountOptions, name: str, value: str) -> None:
    setattr(opts, name, float(whole_number(name, value, 0, 86400)))


def _actimeo(opts: MountOptions, name: str, value: str) -> None:
    seconds = float(whole_number(name, value, 0, 86400))
    opts.acregmin = opts.acregmax = opts.acdirmin = opts.acdirmax = seconds


def _vers(opts: MountOptions, name: str, value: str) -> None:
    if value in ("4.1", "4"):  # vers=4: NFSv4 with minorversion (1 unless told otherwise)
        return
    if value in ("4.0",):
        raise MountOptionError(
            f"mount option {name}={value}: NFSv4.0 is not supported: fusenfs speaks "
            "NFSv4.1 (sessions, RFC 8881); use vers=4.1"
        )
    if value == "4.2":
        raise MountOptionError(
            f"mount option {name}={value}: NFSv4.2 is not supported yet; use vers=4.1"
        )
    if value in ("2", "3"):
        raise MountOptionError(
            f"mount option {name}={value}: fusenfs speaks NFS version 4.1 only "
            "(use the kernel client, mount -t nfs, for NFSv2/v3)"
        )
    raise MountOptionError(f"mount option {name}={value}: fusenfs speaks NFS version 4.1 only")


def _minorversion(opts: MountOptions, name: str, value: str) -> None:
    minor = whole_number(name, value, 0, 99)
    if minor == 1:
        return
    if minor == 0:
        raise MountOptionError(
            "mount option minorversion=0: NFSv4.0 is not supported: fusenfs speaks NFSv4.1"
        )
    raise MountOptionError(
        f"mount option minorversion={minor}: NFSv4.{minor} is not supported yet; use minorversion=1"
    )


def _proto(opts: MountOptions, name: str, value: str) -> None:
    if value in ("tcp", "tcp6"):
        return
    if value in ("udp", "udp6"):
        raise MountOptionError(
            f"mount option proto={value}: NFSv4.1 runs over TCP only (RFC 8881 section "
            "2.9.1); use proto=tcp"
        )
    if value in ("rdma", "rdma6"):
        raise MountOptionError(f"mount option proto={value}: RDMA is not supported; use proto=tcp")
    raise MountOptionError(f"mount option proto={value}: must be tcp (or tcp6)")


def _sec(opts: MountOptions, name: str, value: str) -> None:
    # nfs(5): a colon list in order of preference, e.g. sec=krb5p:krb5i:krb5:sys.
    try:
        flavours = parse_sec(value)
    except ValueError as e:
        raise MountOptionError(f"mount option {e}") from None
    opts.sec = ":".join(f.value for f in flavours)


def _keytab(opts: MountOptions, name: str, value: str) -> None:
    path = value.removeprefix("FILE:")
    if not path.startswith("/"):
        raise MountOptionError(
            f"mount option keytab={value!r}: must be an absolute path (a FILE: keytab)"
        )
    opts.keytab = path


_PRINCIPAL = re.compile(r"[^\s@/]+(/[^\s@/]+)*(@[^\s@/]+)?")


def _principal(opts: MountOptions, name: str, value: str) -> None:
    if not _PRINCIPAL.fullmatch(value):
        raise MountOptionError(
            f"mount option principal={value!r}: not a Kerberos principal name "
            "(e.g. host/client.example.org or host/client.example.org@EXAMPLE.ORG)"
        )
    opts.principal = value


def _lookupcache(opts: MountOptions, name: str, value: str) -> None:
    value = {"pos": "positive"}.get(value, value)
    if value not in ("all", "positive", "none"):
        raise MountOptionError(
            f"mount option lookupcache={value}: must be all, positive (pos) or none"
        )
    opts.lookupcache = value


def _local_lock(opts: MountOptions, name: str, value: str) -> None:
    if value not in ("none", "posix", "flock", "all"):
        raise MountOptionError(
            f"mount option local_lock={value}: must be none, posix, flock or all"
        )
    opts.local_lock = value


def _retry(opts: MountOptions, name: str, value: str) -> None:
    opts.retry = whole_number(name, value, 0, 1_000_000)


def _nconnect(opts: MountOptions, name: str, value: str) -> None:
    opts.nconnect = whole_number(name, value, 1, MAX_NCONNECT)


def _clientaddr(opts: MountOptions, name: str, value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise MountOptionError(
            f"mount option clientaddr={value!r}: not an IPv4 or IPv6 address"
        ) from None
    opts.clientaddr = value


def _namlen(opts: MountOptions, name: str, value: str) -> None:
    n = whole_number(name, value, 1, 65535)
    opts.namlen = min(n, NAME_MAX)  # nothing longer reaches a Linux file system


def _mount8_valued(opts: MountOptions, name: str, value: str) -> None:
    opts.mount8.append(f"{name}={value}")


def _v3_only(opts: MountOptions, name: str, value: str) -> None:
    raise MountOptionError(
        f"mount option {name}: an NFSv2/v3 option (MOUNT or NFSACL protocol); NFSv4.1 has "
        "no use for it"
    )


_Valued = Callable[[MountOptions, str, str], None]

#: Options that take a value: name -> setter(opts, name, value).
_VALUED: dict[str, _Valued] = {
    "port": _port,
    "rsize": _iosize,
    "wsize": _iosize,
    "timeo": _timeo,
    "retrans": _retrans,
    "acregmin": _cache_time,
    "acregmax": _cache_time,
    "acdirmin": _cache_time,
    "acdirmax": _cache_time,
    "actimeo": _actimeo,
    "vers": _vers,
    "nfsvers": _vers,
    "minorversion": _minorversion,
    "proto": _proto,
    "sec": _sec,
    "keytab": _keytab,
    "principal": _principal,
    "lookupcache": _lookupcache,
    "local_lock": _local_lock,
    "retry": _retry,
    "nconnect": _nconnect,
    "clientaddr": _clientaddr,
    "namlen": _namlen,
    "user": _mount8_valued,
    "comment": _mount8_valued,
    "mountport": _v3_only,
    "mountproto": _v3_only,
    "mounthost": _v3_only,
    "mountvers": _v3_only,
    "mountaddr": _v3_only,
}


def _set(**values: object) -> Callable[[MountOptions], None]:
    def apply(opts: MountOptions) -> None:
        for name, value in values.items():
            setattr(opts, name, value)

    return apply


def _ac(opts: MountOptions) -> None:
    opts.noac = False


def _refuse(reason: str) -> Callable[[MountOptions], None]:
    def apply(opts: MountOptions) -> None:
        raise MountOptionError(reason)

    return apply


_LIBFUSE_FLAG = (
    "the installed libfuse cannot set this flag on a FUSE mount (atime, noatime and "
    "relatime it can)"
)

#: Options without a value: name -> what it does to the options.
_FLAGS: dict[str, Callable[[MountOptions], None]] = {
    # kernel mount flags (mount(8))
    "ro": _set(ro=True),
    "rw": _set(ro=False),
    "exec": _set(noexec=False),
    "noexec": _set(noexec=True),
    "suid": _set(suid=True),
    "nosuid": _set(suid=False),
    "dev": _set(dev=True),
    "nodev": _set(dev=False),
    "sync": _set(sync=True),
    "async": _set(sync=False),
    "dirsync": _set(dirsync=True),
    "atime": _set(noatime=False),  # "the kernel's default" (relatime)
    "relatime": _set(noatime=False),
    "noatime": _set(noatime=True),
    # mount(8)'s own; user/users/owner/group imply flags as mount(8) says
    "user": _set(noexec=True, suid=False, dev=False),
    "users": _set(noexec=True, suid=False, dev=False),
    "owner": _set(suid=False, dev=False),
    "group": _set(suid=False, dev=False),
    # nfs(5)
    "hard": _set(hard=True),
    "soft": _set(hard=False, softerr=False),
    "softerr": _set(hard=False, softerr=True),
    "intr": _set(intr=True),
    "nointr": _set(intr=False),
    "ac": _ac,
    "noac": _set(noac=True),
    "cto": _set(cto=True),
    "nocto": _set(cto=False),
    # Not in nfs(5) (the Linux client's switches of this kind are module parameters,
    # for the whole machine): per mount here.
    "deleg": _set(delegations=True),
    "nodeleg": _set(delegations=False),
    "lock": _set(local_lock="none"),
    "nolock": _set(local_lock="all"),
    "bg": _set(bg=True),
    "fg": _set(bg=False),
    "tcp": _set(),
    "noresvport": _set(),  # fusenfs connects from an ordinary port anyway
    "nofsc": _set(),  # no local persistent cache: fusenfs has none
    # fusenfs's own
    "allow_other": _set(allow_other=True),
    "foreground": _set(foreground=True),
    "debug": _set(debug=True),
    # refused, with the reason
    "udp": _refuse("mount option udp: NFSv4.1 runs over TCP only (RFC 8881 section 2.9.1)"),
    "rdma": _refuse("mount option rdma: RDMA is not supported; NFSv4.1 over TCP is"),
    "resvport": _refuse(
        "mount option resvport: not supported: fusenfs connects from an ordinary port"
    ),
    "fsc": _refuse("mount option fsc: fusenfs has no local persistent cache (FS-Cache)"),
    "acl": _refuse("mount option acl: an NFSv3 option (NFSACL protocol)"),
    "noacl": _refuse("mount option noacl: an NFSv3 option (NFSACL protocol)"),
    **{
        flag: _refuse(f"mount option {flag}: {_LIBFUSE_FLAG}")
        for flag in (
            "strictatime",
            "nostrictatime",
            "norelatime",
            "diratime",
            "nodiratime",
            "lazytime",
            "nolazytime",
        )
    },
}

#: mount(8)'s own options: accepted and recorded (``MountOptions.mount8``); those that
#: imply flags are in ``_FLAGS`` too.
MOUNT8_OWN = frozenset(
    {"auto", "noauto", "_netdev", "nofail", "defaults", "nouser", "user", "users", "owner", "group"}
)


def parse_options(
    text: str, base: MountOptions | None = None, *, sloppy: bool = False
) -> MountOptions:
    """Parse ``"port=2049,ro,actimeo=5"`` into ``MountOptions`` (``base``, or new ones).

    Args:
        text: comma-separated options; empty items are skipped.
        base: options to update (earlier ``-o`` strings); later options win.
        sloppy: mount(8)'s ``-s``: an unknown option name is added to ``ignored``
            instead of refused (a known option with a bad value is still refused).

    Raises:
        MountOptionError: an unknown or refused option, a flag given a value, a value
            missing, or a bad number; the message names the option.
    """
    opts = base if base is not None else MountOptions()
    for raw in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = raw.partition("=")
        if name.startswith("x-"):
            opts.mount8.append(raw)  # userspace options for mount(8), systemd, desktops
            continue
        if sep and name in _VALUED:
            _VALUED[name](opts, name, value)
        elif sep and (name in _FLAGS or name in MOUNT8_OWN):
            raise MountOptionError(f"mount option {name} takes no value")
        elif not sep and name in _FLAGS:
            if name in MOUNT8_OWN:
                opts.mount8.append(name)
            _FLAGS[name](opts)
        elif not sep and name in MOUNT8_OWN:
            opts.mount8.append(name)
        elif not sep and name in _VALUED:
            raise MountOptionError(f"mount option {name} needs a value ({name}=...)")
        elif sloppy:
            opts.ignored.append(raw)
        else:
            raise MountOptionError(f"unknown mount option {name!r}")
    return opts


def check_combination(opts: MountOptions) -> None:
    """Options that contradict each other once all are read.

    Raises:
        MountOptionError: ``bg`` with ``foreground`` (a foreground mount has no
            background to go to); ``keytab`` or ``principal`` without a Kerberos
            flavour in ``sec`` (nothing would use them).
    """
    if opts.bg and opts.foreground:
        raise MountOptionError(
            "mount options bg and foreground contradict: bg returns while it retries, "
            "foreground stays with the mount; choose one"
        )
    for given, value in (("keytab", opts.keytab), ("principal", opts.principal)):
        if value and not opts.kerberos:
            raise MountOptionError(
                f"mount option {given}={value}: names the Kerberos machine credential, "
                f"but sec={opts.sec} has no Kerberos flavour (krb5, krb5i, krb5p)"
            )


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


def parse_server_port(text: str, default_port: int = 2049) -> tuple[str, int]:
    """``"HOST"``, ``"HOST:PORT"`` or ``"[ADDR]:PORT"`` -> (host, port).

    Raises:
        MountOptionError: a port that is not a number, or out of range (1-65535).
    """
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise MountOptionError(f"bad server {text!r}: expected [ADDR] or [ADDR]:PORT")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""  # a name, an IPv4 address, or a bare IPv6 address
    if not host:
        raise MountOptionError(f"bad server {text!r}: no server name")
    if not port_text:
        return host, default_port
    if not _DIGITS.fullmatch(port_text):
        raise MountOptionError(f"bad server {text!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise MountOptionError(f"bad server {text!r}: port {port} out of range (1-65535)")
    return host, port
