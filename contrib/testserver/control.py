"""The control protocol: JSON lines over a Unix socket.

A request is one line holding a JSON object ``{"cmd": NAME, ...arguments}``; the answer
is one line ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": TEXT}``.  A
connection may carry any number of requests.  Commands map to :class:`Cluster` methods:

=============  =====================================================================
``status``     ``Cluster.status()``
``events``     events after ``since`` (default 0), as JSON objects
``migrate``    ``fs``, ``to``, ``tsm``, ``session``, ``merge``, ``lose`` (list of
               hex stateids), ``freeze`` (seconds), ``new_filehandles``; answers when
               the migration is done
``expire-fh``  ``fs``, ``force``: ``Cluster.expire_filehandles``
``fh-expire-type``  ``fs``, ``type`` (a name such as "volatile-any" or an integer):
               ``Cluster.set_fh_expire_type``
``referral``   ``path``, ``fs``, ``on``
``reboot``     ``instance``
``expire``     ``instance``, ``clientid`` (hex, optional), ``purge``
``revoke``     ``instance``, ``stateid`` (hex of ``other``)
``recall-any`` ``instance``, ``clientid`` (hex, optional), ``keep`` (objects to keep),
               ``mask`` (list of RCA4_TYPE_MASK_* bit numbers): ``Cluster.recall_any``
``locations``  ``fs``, ``entries`` (list of lists of server strings), ``replace``
``retire``     ``fs``, ``address``
``scope``      ``instance``, ``scope``
``major``      ``instance``, ``major``
``minor``      ``address``, ``minor``
``move``       ``address``, ``to``
=============  =====================================================================
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Final

import trio

from contrib.testserver.cluster import Cluster, ControlError

log = logging.getLogger("contrib.testserver.control")

MAX_LINE: Final = 1 << 20
DEFAULT_CONTROL_PATH: Final = "/tmp/fusenfs-testserver.sock"

Command = Callable[[Cluster, dict[str, Any]], Awaitable[Any]]


def _str(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise ControlError(f"argument {key!r} (a string) is required")
    return value


async def _status(cluster: Cluster, args: dict[str, Any]) -> Any:
    return cluster.status()


async def _events(cluster: Cluster, args: dict[str, Any]) -> Any:
    since = int(args.get("since", 0))
    return [e.to_json() for e in cluster.events.since(since)]


async def _migrate(cluster: Cluster, args: dict[str, Any]) -> Any:
    lose = args.get("lose") or []
    if not isinstance(lose, list) or not all(isinstance(x, str) for x in lose):
        raise ControlError("'lose' must be a list of hex stateids")
    try:
        lost = [bytes.fromhex(x) for x in lose]
    except ValueError:
        raise ControlError("'lose' must be a list of hex stateids") from None
    report = await cluster.migrate(
        _str(args, "fs"),
        _str(args, "to"),
        tsm=bool(args.get("tsm", True)),
        transfer_session=bool(args.get("session", True)),
        merge_client=bool(args.get("merge", True)),
        lose_stateids=lost,
        freeze=float(args.get("freeze", 0.0)),
        new_filehandles=bool(args.get("new_filehandles", False)),
    )
    return report.to_json()


async def _expire_fh(cluster: Cluster, args: dict[str, Any]) -> Any:
    force = args.get("force", False)
    if not isinstance(force, bool):
        raise ControlError("'force' must be true or false")
    return cluster.expire_filehandles(_str(args, "fs"), force=force).to_json()


async def _fh_expire_type(cluster: Cluster, args: dict[str, Any]) -> Any:
    value = args.get("type")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ControlError("argument 'type' (a name such as volatile-any, or a number) is required")
    fs = _str(args, "fs")
    return {"fs": fs, "fh_expire_type": cluster.set_fh_expire_type(fs, value)}


async def _referral(cluster: Cluster, args: dict[str, Any]) -> Any:
    fs = cluster.add_referral(_str(args, "path"), _str(args, "fs"), _str(args, "on"))
    return {"fs": fs.name, "path": "/" + "/".join(fs.path)}


async def _reboot(cluster: Cluster, args: dict[str, Any]) -> Any:
    inst = cluster.reboot(_str(args, "instance"))
    return {"instance": inst.name, "boot_verifier": inst.boot_verifier.hex()}


async def _expire(cluster: Cluster, args: dict[str, Any]) -> Any:
    raw = args.get("clientid")
    clientid = int(raw, 16) if isinstance(raw, str) else None
    done = cluster.expire(_str(args, "instance"), clientid, bool(args.get("purge", False)))
    return [f"{cid:#x}" for cid in done]


async def _revoke(cluster: Cluster, args: dict[str, Any]) -> Any:
    return cluster.revoke(_str(args, "instance"), _str(args, "stateid"))


async def _recall_any(cluster: Cluster, args: dict[str, Any]) -> Any:
    raw = args.get("clientid")
    clientid = int(raw, 16) if isinstance(raw, str) else None
    keep = args.get("keep", 0)
    mask = args.get("mask", [0, 1])
    if isinstance(keep, bool) or not isinstance(keep, int):
        raise ControlError("'keep' must be a number")
    if not isinstance(mask, list) or not all(
        isinstance(b, int) and not isinstance(b, bool) for b in mask
    ):
        raise ControlError("'mask' must be a list of RCA4_TYPE_MASK_* bit numbers")
    return await cluster.recall_any(_str(args, "instance"), clientid, keep=keep, mask=mask)


async def _locations(cluster: Cluster, args: dict[str, Any]) -> Any:
    entries = args.get("entries")
    if not isinstance(entries, list) or not all(isinstance(e, list) for e in entries):
        raise ControlError("'entries' must be a list of lists of server strings")
    cluster.set_locations(_str(args, "fs"), entries, replace=bool(args.get("replace", False)))
    return None


async def _retire(cluster: Cluster, args: dict[str, Any]) -> Any:
    cluster.retire_address(_str(args, "fs"), _str(args, "address"))


async def _scope(cluster: Cluster, args: dict[str, Any]) -> Any:
    cluster.set_server_scope(_str(args, "instance"), _str(args, "scope").encode())


async def _major(cluster: Cluster, args: dict[str, Any]) -> Any:
    cluster.set_so_major_id(_str(args, "instance"), _str(args, "major").encode())


async def _minor(cluster: Cluster, args: dict[str, Any]) -> Any:
    cluster.set_so_minor_id(_str(args, "address"), int(args.get("minor", 0)))


async def _move(cluster: Cluster, args: dict[str, Any]) -> Any:
    cluster.move_address(_str(args, "address"), _str(args, "to"))


COMMANDS: Final[dict[str, Command]] = {
    "status": _status,
    "events": _events,
    "migrate": _migrate,
    "expire-fh": _expire_fh,
    "fh-expire-type": _fh_expire_type,
    "referral": _referral,
    "reboot": _reboot,
    "expire": _expire,
    "revoke": _revoke,
    "recall-any": _recall_any,
    "locations": _locations,
    "retire": _retire,
    "scope": _scope,
    "major": _major,
    "minor": _minor,
    "move": _move,
}


async def execute(cluster: Cluster, request: Any) -> dict[str, Any]:
    """Run one decoded request; never raises for a bad request."""
    if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
        return {"ok": False, "error": 'a request is a JSON object with a "cmd" string'}
    command = COMMANDS.get(request["cmd"])
    if command is None:
        return {"ok": False, "error": f"unknown command {request['cmd']!r}"}
    try:
        result = await command(cluster, request)
    except (ControlError, ValueError, TypeError) as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": True, "result": result}


async def _serve_client(cluster: Cluster, stream: trio.SocketStream) -> None:
    buffer = b""
    async with stream:
        while True:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return
            if not data:
                return
            buffer += data
            if len(buffer) > MAX_LINE:
                return
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if not line.strip():
                    continue
                try:
                    request = json.loads(line)
                except ValueError as exc:
                    answer: dict[str, Any] = {"ok": False, "error": f"not JSON: {exc}"}
                else:
                    answer = await execute(cluster, request)
                try:
                    await stream.send_all(json.dumps(answer).encode() + b"\n")
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return


async def serve_control(
    cluster: Cluster,
    path: str,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on the Unix socket ``path`` (replacing a stale one) until cancelled."""
    if os.path.exists(path):
        os.unlink(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen(16)
    listener = trio.SocketListener(sock)
    log.info("control socket %s", path)
    task_status.started()
    try:

        async def handler(stream: trio.SocketStream) -> None:
            await _serve_client(cluster, stream)

        await trio.serve_listeners(handler, [listener])
    finally:
        with trio.CancelScope(shield=True):
            await listener.aclose()
        if os.path.exists(path):
            os.unlink(path)


def request(control_path: str, cmd: str, /, timeout: float = 120.0, **args: Any) -> Any:
    """Send one request to a running cluster (blocking; for the CLI and tests).

    Raises:
        ControlError: the cluster refused it.
        OSError: no cluster listens on ``control_path``.
    """
    message = json.dumps({"cmd": cmd, **args}).encode() + b"\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(control_path)
        sock.sendall(message)
        buffer = b""
        while b"\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise ControlError("the control socket closed without an answer")
            buffer += chunk
    answer = json.loads(buffer.split(b"\n", 1)[0])
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error")))
    return answer.get("result")
