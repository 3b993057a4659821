"""Running a mount: session, client, FUSE, all in one trio nursery (PYFUSE3.md).

``serve_mount`` connects, establishes the session, finds the export's root, mounts the
FUSE file system and serves it until it is unmounted (``fusermount3 -u``) or the process
gets SIGINT/SIGTERM; then it destroys the session and client ID (RFC 8881 sections
18.37, 18.50).  ``probe`` asks a server what it says about itself.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pyfuse3
import trio

from fusenfs.fs import CacheTimes, NFSOperations
from fusenfs.options import MountOptions
from recovery.manager import StateManager
from session.client import FSINFO_ATTRS, NFSClient
from session.errors import NFSClientError
from session.session import ServerSession, SessionOptions, host_co_ownerid
from session.transport import resolve_address
from session.xdr import nfs4
from session.xdr.const import FATTR4
from session.xdr.fattr import bitmap4_from, bitmap4_to_set, decode_fattr4

log = logging.getLogger("fusenfs")


def session_options(opts: MountOptions) -> SessionOptions:
    """Session tunables from mount options (rsize/wsize cap the channel sizes)."""
    s = SessionOptions(timeo=opts.timeo, retrans=opts.retrans)
    if opts.rsize:
        s.max_response = opts.rsize + 4096
    if opts.wsize:
        s.max_request = opts.wsize + 4096
    return s


@dataclass(slots=True)
class MountRequest:
    host: str
    path: str
    mountpoint: str
    options: MountOptions


async def serve_mount(req: MountRequest, ready: Callable[[str | None], None]) -> None:
    """Mount and serve until unmounted; ``ready(None)`` once mounted, ``ready(msg)`` on failure.

    Raises:
        NFSClientError: the server could not be reached or refused the mount.
    """
    opts = req.options
    address = await resolve_address(req.host, opts.port)
    async with trio.open_nursery() as nursery:
        session = ServerSession(
            host=address,
            port=opts.port,
            co_ownerid=host_co_ownerid(os.path.realpath(req.mountpoint)),
            options=session_options(opts),
        )
        try:
            await session.start(nursery)
            client = NFSClient(session, req.path, owner_prefix=session.co_ownerid)
            await client.mount()
        except NFSClientError as e:
            ready(f"mount {req.host}:{req.path} failed: {e}")
            await session.shutdown()
            nursery.cancel_scope.cancel()
            return
        manager = StateManager(client, nursery)
        manager.attach()
        ops = NFSOperations(
            client,
            nursery,
            CacheTimes(opts.acregmin, opts.acregmax, opts.acdirmin, opts.acdirmax),
        )
        ops.recovery_stats = manager.statistics
        fuse_options = set(pyfuse3.default_options)
        fuse_options.add(f"fsname={req.host}:{req.path}")
        fuse_options.add("subtype=fusenfs")
        if opts.allow_other:
            fuse_options.add("allow_other")
        if opts.ro:
            fuse_options.add("ro")
        try:
            pyfuse3.init(ops, req.mountpoint, fuse_options)
        except RuntimeError as e:
            ready(f"cannot mount on {req.mountpoint}: {e}")
            await session.shutdown()
            nursery.cancel_scope.cancel()
            return
        log.info(
            "mounted %s:%s on %s (maxread=%d maxwrite=%d lease=%ds)",
            req.host,
            req.path,
            req.mountpoint,
            client.maxread,
            client.maxwrite,
            session.lease_time,
        )
        ready(None)
        # pyfuse3.main() returns both when the kernel unmounted us (fusermount3 -u) and
        # when a signal asked us to stop; only the second still needs an unmount.
        stop = _Stop()
        try:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                nursery.start_soon(_terminate_on_signal, signals, stop)
                await pyfuse3.main(min_tasks=4, max_tasks=64)
                stop.clean = True
        finally:
            pyfuse3.close(unmount=stop.signalled or not stop.clean)
            with trio.CancelScope(shield=True):
                for each in manager.sessions():
                    await each.shutdown()
            nursery.cancel_scope.cancel()


@dataclass(slots=True)
class _Stop:
    signalled: bool = False  # SIGINT/SIGTERM asked us to stop
    clean: bool = False  # pyfuse3.main() returned normally


async def _terminate_on_signal(signals: AsyncIterator[int], stop: _Stop) -> None:
    async for signum in signals:
        log.info("signal %d: unmounting", signum)
        stop.signalled = True
        pyfuse3.terminate()
        return


async def probe(host: str, port: int) -> list[tuple[str, str]]:
    """What a server says about itself: (label, value) lines for ``fusenfs probe``.

    EXCHANGE_ID (server_owner, server_scope, implementation id), CREATE_SESSION
    (negotiated channel attributes), GETATTR on the root (supported attributes, fsid,
    lease time), then DESTROY_SESSION and DESTROY_CLIENTID.
    """
    address = await resolve_address(host, port)
    lines: list[tuple[str, str]] = []
    async with trio.open_nursery() as nursery:
        session = ServerSession(
            host=address, port=port, co_ownerid=host_co_ownerid(f"probe/{os.getpid()}")
        )
        try:
            await session.start(nursery)
            eid = session.exchange_id
            cs = session.create_session
            assert eid is not None and cs is not None
            lines.append(("server", f"{host}:{port} ({address})"))
            lines.append(("server_owner.so_major_id", _show(eid.eir_server_owner.so_major_id)))
            lines.append(("server_owner.so_minor_id", str(eid.eir_server_owner.so_minor_id)))
            lines.append(("server_scope", _show(eid.eir_server_scope)))
            for impl in eid.eir_server_impl_id:
                lines.append(("implementation", f"{impl.nii_name} ({impl.nii_domain})"))
            lines.append(("clientid", f"{eid.eir_clientid:#018x}"))
            lines.append(("exchange_id flags", f"{eid.eir_flags:#010x}"))
            fore, back = cs.csr_fore_chan_attrs, cs.csr_back_chan_attrs
            for label, ca in (("fore channel", fore), ("back channel", back)):
                lines.append(
                    (
                        label,
                        f"slots={ca.ca_maxrequests} maxrequestsize={ca.ca_maxrequestsize} "
                        f"maxresponsesize={ca.ca_maxresponsesize} "
                        f"cached={ca.ca_maxresponsesize_cached} maxops={ca.ca_maxoperations}",
                    )
                )
            lines.append(("session flags", f"{cs.csr_flags:#x}"))
            res = await session.compound(
                [
                    nfs4.PUTROOTFH4args(),
                    nfs4.GETATTR4args(
                        attr_request=bitmap4_from(
                            [*bitmap4_to_set(FSINFO_ATTRS), FATTR4.FH_EXPIRE_TYPE]
                        )
                    ),
                ]
            )
            ga = res.resarray[1]
            assert isinstance(ga, nfs4.GETATTR4res) and ga.resok is not None
            attrs = decode_fattr4(ga.resok.obj_attributes)
            supported = bitmap4_to_set(attrs.supported_attrs or [])
            names = [FATTR4(n).name.removeprefix("FATTR4_").lower() for n in sorted(supported)]
            lines.append(("root fsid", str(attrs.fsid)))
            lines.append(("lease_time", f"{attrs.lease_time} s"))
            lines.append(("maxread / maxwrite", f"{attrs.maxread} / {attrs.maxwrite} bytes"))
            lines.append(("fh_expire_type", f"{attrs.fh_expire_type}"))
            lines.append(("supported_attrs", " ".join(names)))
        finally:
            await session.shutdown()
            nursery.cancel_scope.cancel()
    return lines


def _show(value: bytes) -> str:
    """Opaque bytes for a person: text if printable (a trailing NUL shown as such), else hex."""
    text = value.rstrip(b"\0").decode("ascii", "replace")
    if text.isprintable() and "\ufffd" not in text:
        return text + ("\\0" * (len(value) - len(value.rstrip(b"\0"))))
    return "0x" + value.hex()
