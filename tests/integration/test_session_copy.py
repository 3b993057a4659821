"""contrib.session_copy against NFS-Ganesha: the benchmark's session-layer copy (no FUSE).

It must copy every byte both ways, print its JSON figures, and fail in one line with
status 1 on a name the server does not have or a server that is not there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from contrib.ganesha import GaneshaServer
from contrib.session_copy import parse

MiB = 1024 * 1024
TIMEOUT = 120  # seconds for one copy


def session_copy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "contrib.session_copy", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_copies_a_file_out_and_back_with_its_figures(
    ganesha: GaneshaServer, tmp_path: Path
) -> None:
    """5 MiB + 123 bytes (a short last WRITE and READ), 2 in flight: the file on the
    server and the one read back are the source, byte for byte."""
    data = os.urandom(5 * MiB + 123)
    source, back = tmp_path / "source", tmp_path / "back"
    source.write_bytes(data)
    name = f"copy-{uuid.uuid4().hex}"
    where = [ganesha.address, str(ganesha.port), ganesha.pseudo, name]
    wrote = session_copy("write", str(source), *where, "--inflight", "2")
    assert wrote.returncode == 0, wrote.stderr
    assert (Path(ganesha.export_path) / name).read_bytes() == data
    read = session_copy("read", *where, str(back), "--inflight", "2")
    assert read.returncode == 0, read.stderr
    assert back.read_bytes() == data
    for done in (wrote, read):
        figures = json.loads(done.stdout)
        assert figures["bytes"] == len(data)
        assert figures["seconds"] > 0 and figures["cpu_seconds"] > 0


def test_missing_file_and_absent_server_fail_in_one_line(
    ganesha: GaneshaServer, tmp_path: Path
) -> None:
    out = str(tmp_path / "out")
    missing = session_copy("read", ganesha.address, str(ganesha.port), ganesha.pseudo, "nope", out)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "session_copy: /export/nope: NFS4ERR_NOENT at op 1 (OPEN)"
    assert missing.stdout == ""
    absent = session_copy("read", "127.0.0.1", "1", ganesha.pseudo, "nope", out)
    assert absent.returncode == 1
    assert absent.stderr.startswith("session_copy: cannot connect to 127.0.0.1:1")
    assert len(absent.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["read", "127.0.0.1", "2049", "/export", "a/b", "out"], "file name"),
        (["read", "127.0.0.1", "2049", "/export", "..", "out"], "file name"),
        (["write", "src", "127.0.0.1", "2049", "/export", "n", "--inflight", "0"], "at least 1"),
    ],
)
def test_bad_arguments_are_refused(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse(argv)
    assert exit_.value.code == 2
    assert error in capsys.readouterr().err
