"""The inode table: stable numbers per (fsid, fileid), FUSE lookup counts, attribute merge."""

from __future__ import annotations

import pyfuse3
import pytest

from fusenfs.inodes import Inode, InodeTable, StatAttrs
from session.xdr.const import nfs_ftype4
from session.xdr.fattr import NFSAttrs
from session.xdr.nfs4 import fsid4, nfstime4

FS1 = fsid4(10, 1)
FS2 = fsid4(10, 2)


def attrs(fileid: int, fsid: fsid4 = FS1, **more: object) -> NFSAttrs:
    a = NFSAttrs(fsid=fsid, fileid=fileid, type=nfs_ftype4.NF4REG)
    for name, value in more.items():
        setattr(a, name, value)
    return a


#: The superblock's numbers for FS1 and FS2 (``session.mount.FileSystem.fs_id``).
FS_IDS = {FS1: 1, FS2: 2}


def learn(table: InodeTable, fh: bytes, a: NFSAttrs) -> Inode:
    """``table.learn`` with the fs_id of the attributes' fsid."""
    return table.learn(fh, a, FS_IDS.get(a.fsid or FS1, 1))


def table_with_root() -> tuple[InodeTable, Inode]:
    table = InodeTable()
    root = table.set_root(b"root-fh", attrs(2, type=nfs_ftype4.NF4DIR), FS_IDS[FS1])
    return table, root


def test_root_is_inode_1_with_one_reference() -> None:
    table, root = table_with_root()
    assert pyfuse3.ROOT_INODE == 1
    assert root.ino == 1 and root.fh == b"root-fh" and root.lookups == 1
    assert table.get(1) is root
    assert len(table) == 1


def test_seeing_the_root_again_gives_inode_1() -> None:
    table, root = table_with_root()
    again = learn(table, b"root-fh-2", attrs(2))
    assert again is root and again.ino == 1
    assert root.fh == b"root-fh-2"


def test_a_known_file_seen_with_a_new_filehandle_is_reported_once() -> None:
    # The server gave the same (fs_id, fileid) a new handle (volatile handles expired,
    # RFC 8881 section 4.2.3): whoever keeps state by filehandle must hear of it.
    changes: list[tuple[bytes, bytes]] = []
    table = InodeTable(on_new_fh=lambda old, new: changes.append((old, new)))
    node = learn(table, b"fa", attrs(100))
    assert learn(table, b"fa", attrs(100)) is node
    assert changes == []  # the same handle again: nothing to move
    assert learn(table, b"fa-2", attrs(100)) is node
    assert node.fh == b"fa-2" and changes == [(b"fa", b"fa-2")]
    table.set_fh(node, b"fa-2")
    table.set_fh(node, b"fa-3")
    assert changes == [(b"fa", b"fa-2"), (b"fa-2", b"fa-3")]


def test_new_files_get_new_numbers_above_the_root() -> None:
    table, _ = table_with_root()
    a = learn(table, b"fa", attrs(100))
    b = learn(table, b"fb", attrs(101))
    assert a.ino > 1 and b.ino > 1 and a.ino != b.ino
    assert table.get(a.ino) is a and table.get(b.ino) is b
    assert len(table) == 3


def test_same_fsid_and_fileid_keep_their_number_and_take_the_new_fh() -> None:
    table, _ = table_with_root()
    a = learn(table, b"fh-old", attrs(100, size=1))
    again = learn(table, b"fh-new", attrs(100, size=2))
    assert again is a
    assert a.fh == b"fh-new" and a.attrs.size == 2


def test_same_fileid_on_another_file_system_is_another_inode() -> None:
    table, _ = table_with_root()
    a = learn(table, b"fa", attrs(100, FS1))
    b = learn(table, b"fb", attrs(100, FS2))
    assert a.ino != b.ino
    assert (b.fs_id, b.fileid) == (FS_IDS[FS2], 100)


def test_learn_without_fileid_is_refused() -> None:
    table, _ = table_with_root()
    with pytest.raises(ValueError):
        learn(table, b"f", NFSAttrs(fsid=FS1))


def test_forget_drops_the_record_when_no_lookups_remain() -> None:
    table, _ = table_with_root()
    a = learn(table, b"fa", attrs(100))
    a.lookups = 3
    table.forget(a.ino, 2)
    assert table.get(a.ino) is a and a.lookups == 1
    table.forget(a.ino, 1)
    assert table.get(a.ino) is None
    assert len(table) == 1


def test_forget_more_than_held_does_not_go_negative() -> None:
    table, _ = table_with_root()
    a = learn(table, b"fa", attrs(100))
    a.lookups = 1
    table.forget(a.ino, 5)
    assert table.get(a.ino) is None


def test_an_open_inode_outlives_its_last_forget() -> None:
    table, _ = table_with_root()
    a = learn(table, b"fa", attrs(100))
    a.lookups, a.opens = 1, 1
    table.forget(a.ino, 1)
    assert table.get(a.ino) is a and a.lookups == 0


def test_root_and_unknown_inodes_are_never_forgotten() -> None:
    table, root = table_with_root()
    table.forget(root.ino, 10)
    assert table.get(1) is root
    table.forget(12345, 1)  # unknown: no error
    assert len(table) == 1


def test_numbers_are_not_reused_after_forget() -> None:
    table, _ = table_with_root()
    a = learn(table, b"fa", attrs(100))
    number = a.ino
    a.lookups = 1
    table.forget(number, 1)
    b = learn(table, b"fb", attrs(101))
    assert b.ino != number
    back = learn(table, b"fa2", attrs(100))  # the same file seen again: the same number
    assert back.ino == number and back is not a
    assert back.lookups == 0


def test_stat_attributes_keep_what_an_update_lacks() -> None:
    mtime = nfstime4(1_700_000_000, 5)
    kept = StatAttrs()
    kept.update(NFSAttrs(size=10, mode=0o644, fileid=7, time_modify=mtime, owner="a@x"))
    kept.update(NFSAttrs(size=20, fileid=7, owner="b@x"))
    assert (kept.size, kept.mode, kept.owner) == (20, 0o644, "b@x")
    assert kept.mtime_ns == 1_700_000_000_000_000_005
    assert kept.type is None  # absent from both


def test_set_attrs_merges_partial_attributes_and_stamps_the_time() -> None:
    table, _ = table_with_root()
    a = learn(table, b"fa", attrs(100, size=5, mode=0o600))
    before = a.attrs_at
    assert before > 0
    a.set_attrs(NFSAttrs(size=9))  # e.g. a WRITE's post-op size only
    assert a.attrs.size == 9 and a.attrs.mode == 0o600 and a.fileid == 100
    assert a.attrs_at >= before


def test_equal_times_and_change_share_one_int() -> None:
    """A file's equal atime, mtime, ctime (and a change attribute that is its ctime in
    nanoseconds) are kept as one int object: 36 bytes each, per cached inode."""
    t = nfstime4(1_700_000_000, 123_456_789)
    ns = 1_700_000_000_123_456_789
    a = StatAttrs()
    a.update(NFSAttrs(time_access=t, time_modify=t, time_metadata=t, change=ns))
    assert a.atime_ns == a.mtime_ns == a.ctime_ns == a.change == ns
    assert a.atime_ns is a.mtime_ns and a.ctime_ns is a.mtime_ns and a.change is a.ctime_ns
    # Different values stay what they are.
    later = nfstime4(1_700_000_001, 5)
    a.update(NFSAttrs(time_access=later, change=ns + 7))
    assert (a.atime_ns, a.mtime_ns, a.ctime_ns, a.change) == (
        1_700_000_001_000_000_005,
        ns,
        ns,
        ns + 7,
    )


def test_the_largest_fileid_stays_on_its_own_file_system() -> None:
    """The table's key packs (fs_id, fileid) into one int: a uint64 fileid must not
    reach into the next file system's keys."""
    table, _ = table_with_root()
    big = learn(table, b"fh-c", attrs(2**64 - 1, FS1))
    zero = learn(table, b"fh-d", attrs(0, FS2))
    assert big.ino != zero.ino
    assert table.find_key(FS_IDS[FS1], 2**64 - 1) is big
    assert table.find_key(FS_IDS[FS2], 0) is zero
    assert table.find_key(FS_IDS[FS2], 2**64 - 1) is None
