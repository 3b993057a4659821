"""Ordinary tools on a fusenfs mount: cp, tar, ls -lR, diff -r, df, mv, ln -s, touch.

The tools run as subprocesses with timeouts; results are checked through the mount and
on the server's side (Ganesha's export directory).
"""

from __future__ import annotations

import difflib
import os
import random
import re
import stat
import time
from pathlib import Path

import pytest

from .helpers import MiB, Workspace, drop_caches, run, sha256_file, write_random_file

pytestmark = [pytest.mark.fuse, pytest.mark.ganesha]

BIG = 256 * MiB
TREE_FILES = 2000
FILE_MODES = (0o644, 0o600, 0o755, 0o444, 0o640, 0o700, 0o664, 0o400)
DIR_MODES = (0o755, 0o750, 0o700, 0o775)


def test_256mib_file_copied_in_and_out_is_identical(ws: Workspace, local_tmp: Path) -> None:
    src = local_tmp / "big.bin"
    digest = write_random_file(src, BIG)
    started = time.monotonic()
    run(["cp", src, ws.dir / "big.bin"], timeout=180)
    copy_in = time.monotonic() - started
    assert os.stat(ws.dir / "big.bin").st_size == BIG
    assert os.stat(ws.server / "big.bin").st_size == BIG
    assert sha256_file(ws.server / "big.bin") == digest, "the server's copy differs"
    # Read it back from the server, not from pages the kernel kept from the writes.
    drop_caches()
    Path("/proc/sys/vm/drop_caches").write_text("1\n")
    started = time.monotonic()
    run(["cp", ws.dir / "big.bin", local_tmp / "back.bin"], timeout=180)
    copy_out = time.monotonic() - started
    assert sha256_file(local_tmp / "back.bin") == digest, "the copy read back differs"
    run(["cmp", src, ws.dir / "big.bin"], timeout=180)
    print(f"256 MiB: cp in {copy_in:.1f} s, cp out {copy_out:.1f} s")


def build_tree(root: Path, files: int, seed: int = 8881) -> dict[str, int]:
    """A tree of small files with subdirectories, modes, symlinks and hard links.

    Returns counts by kind.
    """
    rng = random.Random(seed)
    dirs = [root]
    for i in range(24):
        parent = dirs[rng.randrange(len(dirs))] if i >= 8 else root
        d = parent / f"dir{i:02d}"
        d.mkdir()
        dirs.append(d)
    regular: list[Path] = []
    for i in range(files):
        d = dirs[i % len(dirs)]
        p = d / f"file{i:04d}{rng.choice(['', '.txt', '.dat', ' with space', '-ü'])}"
        p.write_bytes(rng.randbytes(rng.choice([0, 1, 100, 511, 512, 4095, 4096, 4097, 9000])))
        os.chmod(p, FILE_MODES[i % len(FILE_MODES)])
        os.utime(p, ns=(1_600_000_000_000_000_000 + i * 1_000_000_007,) * 2)
        regular.append(p)
    symlinks = 0
    for i in range(120):
        d = dirs[rng.randrange(len(dirs))]
        target = regular[rng.randrange(len(regular))]
        kind = i % 4
        link_target = (
            os.path.relpath(target, d)
            if kind == 0
            else str(target.relative_to(root))
            if kind == 1
            else f"../dangling-{i}"
            if kind == 2
            else "/etc/hostname"
        )
        os.symlink(link_target, d / f"link{i:03d}")
        symlinks += 1
    hardlinks = 0
    for i in range(150):
        target = regular[(i * 7) % len(regular)]
        d = dirs[rng.randrange(len(dirs))]
        os.link(target, d / f"hard{i:03d}")
        hardlinks += 1
    for i, d in enumerate(dirs[1:]):
        os.chmod(d, DIR_MODES[i % len(DIR_MODES)])
    return {"dirs": len(dirs) - 1, "files": files, "symlinks": symlinks, "hardlinks": hardlinks}


_TOTAL = re.compile(r"^total \d+$")


def listing(root: Path) -> list[str]:
    """``ls -lnR --time-style=+%s`` of ``root``, made comparable.

    Kept: names, types and modes, link counts, ids, sizes of everything but
    directories, mtimes to the second (tar keeps no more), symlink targets.  Dropped:
    "total" lines (they count blocks), directory sizes (they depend on the server's
    directory format) and symlink mtimes: Ganesha's VFS FSAL answers SETATTR of times on
    a symlink with NFS4_OK but does not set them ("Setting time on symlinks is illegal",
    FSAL_VFS/file.c), so no client can make them match.
    """
    out = run(["ls", "-lnR", "--time-style=+%s", "."], cwd=root, timeout=120).stdout
    lines = []
    for line in out.splitlines():
        if _TOTAL.match(line):
            continue
        fields = line.split(None, 6)
        if len(fields) == 7 and fields[0][0] in "dl":
            fields[4 if fields[0][0] == "d" else 5] = "-"
            line = " ".join(fields)
        lines.append(line)
    return lines


def assert_same_listing(want: list[str], got: list[str], where: str) -> None:
    if got != want:
        diff = list(difflib.unified_diff(want, got, "source", where, lineterm="", n=0))
        changed = sum(1 for line in diff if line.startswith("+") and not line.startswith("++"))
        shown = "\n".join(diff[:60])
        pytest.fail(f"ls -lnR of {where} differs from the source in {changed} lines:\n{shown}")


def inode_groups(root: Path) -> list[list[str]]:
    """Names grouped by inode number: the hard-link structure of a tree."""
    groups: dict[int, list[str]] = {}
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                groups.setdefault(st.st_ino, []).append(str(path.relative_to(root)))
    return sorted(sorted(g) for g in groups.values())


def test_tar_tree_unpacked_into_the_mount_matches(ws: Workspace, local_tmp: Path) -> None:
    src = local_tmp / "src"
    src.mkdir()
    counts = build_tree(src, TREE_FILES)
    tarball = local_tmp / "tree.tar"
    run(["tar", "-C", src, "-cf", tarball, "."], timeout=120)
    dest = ws.dir / "tree"
    os.mkdir(dest)
    started = time.monotonic()
    run(["tar", "-C", dest, "-xf", tarball], timeout=300)
    untar = time.monotonic() - started

    want = listing(src)
    assert len(want) > TREE_FILES + counts["symlinks"] + counts["hardlinks"]
    assert_same_listing(want, listing(dest), "the mount")
    assert_same_listing(want, listing(ws.server / "tree"), "the server")
    run(["diff", "-r", "--no-dereference", src, dest], timeout=180)
    run(["diff", "-r", "--no-dereference", src, ws.server / "tree"], timeout=180)
    assert inode_groups(dest) == inode_groups(src)
    # Again after the kernel forgot every inode: all from fresh LOOKUPs.
    drop_caches()
    assert_same_listing(want, listing(dest), "the mount after drop_caches")
    print(f"tar x of {counts} took {untar:.1f} s")


def test_df_shows_the_mount(ws: Workspace) -> None:
    out = run(["df", "-P", "-B1", ws.mount.path], timeout=30).stdout.splitlines()
    assert len(out) == 2, out
    source, total, used, avail, _pct, target = out[1].split(None, 5)
    assert source == f"{ws.ganesha.address}:{ws.ganesha.pseudo}"
    assert target == str(ws.mount.path)
    server = os.statvfs(ws.server)
    server_total = server.f_blocks * server.f_frsize
    assert abs(int(total) - server_total) <= server_total // 100 + 4096
    assert int(used) > 0 and int(avail) > 0
    out_i = run(["df", "-P", "-i", ws.mount.path], timeout=30).stdout.splitlines()
    assert out_i[1].split()[-1] == str(ws.mount.path)
    assert "fuse.fusenfs" in run(["df", "-T", ws.mount.path], timeout=30).stdout


def test_mv_across_directories(ws: Workspace, local_tmp: Path) -> None:
    a, b = ws.dir / "a", ws.dir / "b"
    os.mkdir(a)
    os.mkdir(b)
    (a / "f").write_bytes(b"moving file")
    os.mkdir(a / "sub")
    (a / "sub" / "g").write_bytes(b"moving dir")
    ino = os.stat(a / "f").st_ino
    run(["mv", a / "f", b / "f"])
    run(["mv", a / "sub", b])
    assert os.listdir(a) == []
    assert sorted(os.listdir(b)) == ["f", "sub"]
    assert (b / "f").read_bytes() == b"moving file"
    assert (b / "sub" / "g").read_bytes() == b"moving dir"
    assert os.stat(b / "f").st_ino == ino
    assert (ws.server / "b" / "sub" / "g").read_bytes() == b"moving dir"
    assert os.listdir(ws.server / "a") == []
    # From the local disk into the mount (a copy and an unlink) and back out.
    local = local_tmp / "local.txt"
    local.write_bytes(b"from local disk" * 1000)
    run(["mv", local, a])
    assert not local.exists()
    assert (a / "local.txt").read_bytes() == b"from local disk" * 1000
    run(["mv", a / "local.txt", local_tmp / "back.txt"])
    assert not (a / "local.txt").exists()
    assert (local_tmp / "back.txt").read_bytes() == b"from local disk" * 1000
    # mv over an existing file replaces it.
    (a / "x").write_bytes(b"x wins")
    (b / "x").write_bytes(b"loser")
    run(["mv", "-f", a / "x", b / "x"])
    assert (b / "x").read_bytes() == b"x wins"
    assert not (a / "x").exists()


def test_ln_s_ln_and_touch(ws: Workspace) -> None:
    d = ws.dir
    run(["touch", d / "empty"])
    st = os.stat(d / "empty")
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0
    assert abs(st.st_mtime - time.time()) < 10
    assert (ws.server / "empty").exists()
    run(["touch", "-d", "@1234567890", d / "empty"])
    assert os.stat(d / "empty").st_mtime == 1234567890
    assert os.stat(ws.server / "empty").st_mtime == 1234567890
    run(["touch", "-a", "-d", "@1000000000", d / "empty"])
    assert os.stat(d / "empty").st_atime == 1000000000
    assert os.stat(d / "empty").st_mtime == 1234567890
    run(["touch", d / "empty"])
    assert abs(os.stat(d / "empty").st_mtime - time.time()) < 10

    run(["ln", "-s", "empty", d / "link"])
    assert run(["readlink", d / "link"]).stdout.strip() == "empty"
    assert os.readlink(ws.server / "link") == "empty"
    (d / "other").write_bytes(b"other")
    run(["ln", "-sfn", "other", d / "link"])
    assert run(["readlink", d / "link"]).stdout.strip() == "other"
    assert run(["cat", d / "link"]).stdout == "other"
    run(["ln", d / "other", d / "hard"])
    assert os.stat(d / "hard").st_nlink == 2
    assert os.stat(d / "hard").st_ino == os.stat(d / "other").st_ino
    # touch through a symlink touches the target.
    run(["touch", "-d", "@1500000000", d / "link"])
    assert os.stat(d / "other").st_mtime == 1500000000
    ls = run(["ls", "-l", d]).stdout
    assert re.search(r"^l\S+ .* link -> other$", ls, re.M), ls
