"""A process that takes locks on a file when told to, for the lock tests.

Run as ``python3 tests/fuse/lockholder.py PATH`` (the lock owner is this process).  It
reads one command per line on stdin and answers one line on stdout:

    open MODE             open PATH ("r", "w" or "rw"); "ok"
    setlk T START LEN     fcntl F_SETLK, T = r / w / u; "ok" or "err ERRNO"
    setlkw T START LEN    fcntl F_SETLKW (blocks); "ok" or "err ERRNO"
    getlk T START LEN     fcntl F_GETLK; "none" or "TYPE START LEN PID"
    flock OP              flock with OP = sh, ex, un, sh-nb, ex-nb; "ok" or "err ERRNO"
    lockf START LEN       lockf F_TLOCK of LEN bytes from START; "ok" or "err ERRNO"
    close                 close the file (POSIX: releases this process's locks); "ok"
    exit                  exit 0
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import struct
import sys

TYPES = {"r": fcntl.F_RDLCK, "w": fcntl.F_WRLCK, "u": fcntl.F_UNLCK}
NAMES = {fcntl.F_RDLCK: "r", fcntl.F_WRLCK: "w", fcntl.F_UNLCK: "u"}
FLOCK = {
    "sh": fcntl.LOCK_SH,
    "ex": fcntl.LOCK_EX,
    "un": fcntl.LOCK_UN,
    "sh-nb": fcntl.LOCK_SH | fcntl.LOCK_NB,
    "ex-nb": fcntl.LOCK_EX | fcntl.LOCK_NB,
}
# struct flock on Linux x86_64 / aarch64: short l_type, short l_whence, off_t l_start,
# off_t l_len, pid_t l_pid (and padding).
FLOCK_STRUCT = struct.Struct("hhqqi4x")


def _interrupted(signum: int, frame: object) -> None:
    # Raising makes Python give up the system call (PEP 475 retries it otherwise), so
    # a blocking F_SETLKW answers "err 4" (EINTR).
    raise InterruptedError(errno.EINTR, "interrupted")


def main(path: str) -> None:
    signal.signal(signal.SIGINT, _interrupted)
    fd = -1
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        cmd, args = words[0], words[1:]
        try:
            if cmd == "open":
                flags = {"r": os.O_RDONLY, "w": os.O_WRONLY, "rw": os.O_RDWR}[args[0]]
                fd = os.open(path, flags)
                answer = "ok"
            elif cmd in ("setlk", "setlkw", "getlk"):
                op = {"setlk": fcntl.F_SETLK, "setlkw": fcntl.F_SETLKW, "getlk": fcntl.F_GETLK}
                raw = FLOCK_STRUCT.pack(TYPES[args[0]], os.SEEK_SET, int(args[1]), int(args[2]), 0)
                got = fcntl.fcntl(fd, op[cmd], raw)
                if cmd == "getlk":
                    ltype, _, start, length, pid = FLOCK_STRUCT.unpack(got)
                    answer = (
                        "none"
                        if ltype == fcntl.F_UNLCK
                        else f"{NAMES[ltype]} {start} {length} {pid}"
                    )
                else:
                    answer = "ok"
            elif cmd == "flock":
                fcntl.flock(fd, FLOCK[args[0]])
                answer = "ok"
            elif cmd == "lockf":
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, int(args[1]), int(args[0]))
                answer = "ok"
            elif cmd == "close":
                os.close(fd)
                fd = -1
                answer = "ok"
            elif cmd == "exit":
                return
            else:
                answer = f"unknown {cmd}"
        except OSError as e:
            answer = f"err {e.errno}"
        print(answer, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
