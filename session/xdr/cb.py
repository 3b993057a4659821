"""The NFSv4.1 callback program: CB_COMPOUND and its operations (RFC 8881 sections
19 and 20; XDR of RFC 5662).

Same conventions as ``session.xdr.nfs4``: every result's first field is ``status``
(RFC 5662: ``csr_status`` for CB_SEQUENCE ...), the OK arm is ``resok``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final, Self, TypeAlias

from session.errors import XdrError
from session.xdr.codec import Decoder, Encoder
from session.xdr.const import NFS4_FHSIZE, NFS4_SESSIONID_SIZE, nfs_cb_opnum4, nfsstat4
from session.xdr.nfs4 import (
    MAX_COMPOUND_OPS,
    fattr4,
    pack_bitmap4,
    state_owner4,
    stateid4,
    unpack_bitmap4,
)


@dataclass(slots=True)
class CbStatusOnly4res:
    """Base of the callback results that are only a status (CB_RECALL4res, ...)."""

    status: nfsstat4

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.enum(nfsstat4, cls.__name__ + ".status"))


def _ok_arm_missing(res: str) -> ValueError:
    return ValueError(f"{res}: arm 'resok' is required for NFS4_OK")


# -- CB_GETATTR, RFC 8881 section 20.1 -------------------------------------------------
@dataclass(slots=True)
class CB_GETATTR4args:
    """CB_GETATTR4args, RFC 8881 section 20.1: the file ``fh`` of a write delegation and
    the ``attr_request`` bitmap4 (size and change)."""

    OPNUM: ClassVar[nfs_cb_opnum4] = nfs_cb_opnum4.OP_CB_GETATTR
    fh: bytes
    attr_request: list[int]

    def pack(self, enc: Encoder) -> None:
        enc.opaque(self.fh)
        pack_bitmap4(enc, self.attr_request)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        fh = dec.opaque("CB_GETATTR4args.fh", NFS4_FHSIZE)
        return cls(fh, unpack_bitmap4(dec, "CB_GETATTR4args.attr_request"))


@dataclass(slots=True)
class CB_GETATTR4resok:
    """CB_GETATTR4resok, RFC 8881 section 20.1."""

    obj_attributes: fattr4

    def pack(self, enc: Encoder) -> None:
        self.obj_attributes.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(fattr4.unpack(dec))


@dataclass(slots=True)
class CB_GETATTR4res:
    """CB_GETATTR4res, RFC 8881 section 20.1."""

    OPNUM: ClassVar[nfs_cb_opnum4] = nfs_cb_opnum4.OP_CB_GETATTR
    status: nfsstat4
    resok: CB_GETATTR4resok | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4_OK:
            if self.resok is None:
                raise _ok_arm_missing("CB_GETATTR4res")
            self.resok.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = dec.enum(nfsstat4, "CB_GETATTR4res.status")
        if status == nfsstat4.NFS4_OK:
            return cls(status, CB_GETATTR4resok.unpack(dec))
        return cls(status)


# -- CB_RECALL, RFC 8881 section 20.2 --------------------------------------------------
@dataclass(slots=True)
class CB_RECALL4args:
    """CB_RECALL4args, RFC 8881 section 20.2: return the delegation ``stateid`` on
    ``fh``; ``truncate`` hints the file will be truncated."""

    OPNUM: ClassVar[nfs_cb_opnum4] = nfs_cb_opnum4.OP_CB_RECALL
    stateid: stateid4
    truncate: bool
    fh: bytes

    def pack(self, enc: Encoder) -> None:
        self.stateid.pack(enc)
        enc.boolean(self.truncate)
        enc.opaque(self.fh)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            stateid4.unpack(dec),
            dec.boolean("CB_RECALL4args.truncate"),
            dec.opaque("CB_RECALL4args.fh", NFS4_FHSIZE),
        )


class CB_RECALL4res(CbStatusOnly4res):
    """CB_RECALL4res, RFC 8881 section 20.2."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_cb_opnum4] = nfs_cb_opnum4.OP_CB_RECALL


# -- CB_RECALL_ANY, CB_RECALLABLE_OBJ_AVAIL, RFC 8881 sections 20.6 and 20.7 -----------
@dataclass(slots=True)
class _RecallAny4args:
    """The fields and encoding shared by CB_RECALL_ANY4args and its RFC typedef
    CB_RECALLABLE_OBJ_AVAIL4args; the two stay distinct types (neither is the other)."""

    craa_objects_to_keep: int
    craa_type_mask: list[int]

    def pack(self, enc: Encoder) -> None:
        enc.uint32(self.craa_objects_to_keep)
        pack_bitmap4(enc, self.craa_type_mask)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        keep = dec.uint32(f"{cls.__name__}.craa_objects_to_keep")
        return cls(keep, unpack_bitmap4(dec, f"{cls.__name__}.craa_type_mask"))


@dataclass(slots=True)
class CB_RECALL_ANY4args(_RecallAny4args):
    """CB_RECALL_ANY4args, RFC 8881 section 20.6: keep at most
    ``craa_objects_to_keep`` of the object types in ``craa_type_mask`` (bitmap4 of
    RCA4_TYPE_MASK_* bits)."""

    OPNUM: ClassVar[nfs_cb_opnum4] = nfs_cb_opnum4.OP_CB_RECALL_ANY


class CB_RECALL_ANY4res(CbStatusOnly4res):
    """CB_RECALL_ANY4res (RFC: crar_status), RFC 8881 section 20.6."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_cb_opnum4] = nfs_cb_opnum4.OP_CB_RECALL_ANY


@dataclass(slots=True)
class CB_RECALLABLE_OBJ_AVAIL4args(_RecallAny4args):
    """CB_RECALLABLE_OBJ_AVAIL4args (RFC: a typedef of CB_RECALL_ANY4args, same
    fields and encoding), RFC 8881 section 20.7."""

    OPNUM: ClassVar[nfs_cb_opnum4] = nfs_cb_opnum4.OP_CB_RECALLABLE_OBJ_AVAIL


class CB_RECALLABLE_OBJ_AVAIL4res(CbStatusOnly4res):
    """CB_RECALLABLE_OBJ_AVAIL4res (RFC: croa_status), RFC 8881 section 20.7."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_cb_opnum4] = nfs_cb_opnum4.OP_CB_RECALLABLE_OBJ_AVAIL


# -- CB_RECALL_SLOT, RFC 8881 section 20.8 ---------------------------------------------
@dataclass(slots=True)
class CB_RECALL_SLOT4args:
    """CB_RECALL_SLOT4args, RFC 8881 section 20.8: shrink the fore channel's slot table
    so the highest slot index is ``rsa_target_highest_slotid``."""

    OPNUM: ClassVar[nfs_cb_opnum4] = nfs_cb_opnum4.OP_CB_RECALL_SLOT
    rsa_target_highest_slotid: int

    def pack(self, enc: Encoder) -> None:
        enc.uint32(self.rsa_target_highest_slotid)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.uint32("CB_RECALL_SLOT4args.rsa_target_highest_slotid"))


class CB_RECALL_SLOT4res(CbStatusOnly4res):
    """CB_RECALL_SLOT4res (RFC: rsr_status), RFC 8881 section 20.8."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_cb_opnum4] = nfs_cb_opnum4.OP_CB_RECALL_SLOT


# -- CB_SEQUENCE, RFC 8881 section 20.9 ------------------------------------------------
@dataclass(frozen=True, slots=True)
class referring_call4:
    """referring_call4, RFC 8881 section 20.9: a fore-channel call (sequence id, slot)
    whose reply this callback may race with (section 2.10.6.3)."""

    rc_sequenceid: int
    rc_slotid: int

    def pack(self, enc: Encoder) -> None:
        enc.uint32(self.rc_sequenceid)
        enc.uint32(self.rc_slotid)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.uint32("referring_call4.rc_sequenceid"), dec.uint32("referring_call4.rc_slotid")
        )


@dataclass(slots=True)
class referring_call_list4:
    """referring_call_list4, RFC 8881 section 20.9: the referring calls of one session."""

    rcl_sessionid: bytes
    rcl_referring_calls: list[referring_call4]

    def pack(self, enc: Encoder) -> None:
        enc.fixed_opaque(NFS4_SESSIONID_SIZE, self.rcl_sessionid)
        enc.struct_array(self.rcl_referring_calls)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        sessionid = dec.fixed_opaque(NFS4_SESSIONID_SIZE, "referring_call_list4.rcl_sessionid")
        return cls(sessionid, dec.struct_array(referring_call4, min_item=8))


@dataclass(slots=True)
class CB_SEQUENCE4args:
    """CB_SEQUENCE4args, RFC 8881 section 20.9: like SEQUENCE4args for the back
    channel, plus ``csa_referring_call_lists``."""

    OPNUM: ClassVar[nfs_cb_opnum4] = nfs_cb_opnum4.OP_CB_SEQUENCE
    csa_sessionid: bytes
    csa_sequenceid: int
    csa_slotid: int
    csa_highest_slotid: int
    csa_cachethis: bool
    csa_referring_call_lists: list[referring_call_list4]

    def pack(self, enc: Encoder) -> None:
        enc.fixed_opaque(NFS4_SESSIONID_SIZE, self.csa_sessionid)
        enc.uint32(self.csa_sequenceid)
        enc.uint32(self.csa_slotid)
        enc.uint32(self.csa_highest_slotid)
        enc.boolean(self.csa_cachethis)
        enc.struct_array(self.csa_referring_call_lists)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.fixed_opaque(NFS4_SESSIONID_SIZE, "CB_SEQUENCE4args.csa_sessionid"),
            dec.uint32("CB_SEQUENCE4args.csa_sequenceid"),
            dec.uint32("CB_SEQUENCE4args.csa_slotid"),
            dec.uint32("CB_SEQUENCE4args.csa_highest_slotid"),
            dec.boolean("CB_SEQUENCE4args.csa_cachethis"),
            dec.struct_array(referring_call_list4, min_item=20),
        )


@dataclass(slots=True)
class CB_SEQUENCE4resok:
    """CB_SEQUENCE4resok, RFC 8881 section 20.9."""

    csr_sessionid: bytes
    csr_sequenceid: int
    csr_slotid: int
    csr_highest_slotid: int
    csr_target_highest_slotid: int

    def pack(self, enc: Encoder) -> None:
        enc.fixed_opaque(NFS4_SESSIONID_SIZE, self.csr_sessionid)
        enc.uint32(self.csr_sequenceid)
        enc.uint32(self.csr_slotid)
        enc.uint32(self.csr_highest_slotid)
        enc.uint32(self.csr_target_highest_slotid)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.fixed_opaque(NFS4_SESSIONID_SIZE, "CB_SEQUENCE4resok.csr_sessionid"),
            dec.uint32("CB_SEQUENCE4resok.csr_sequenceid"),
            dec.uint32("CB_SEQUENCE4resok.csr_slotid"),
            dec.uint32("CB_SEQUENCE4resok.csr_highest_slotid"),
            dec.uint32("CB_SEQUENCE4resok.csr_target_highest_slotid"),
        )


@dataclass(slots=True)
class CB_SEQUENCE4res:
    """CB_SEQUENCE4res (RFC: csr_status, csr_resok4), RFC 8881 section 20.9."""

    OPNUM: ClassVar[nfs_cb_opnum4] = nfs_cb_opnum4.OP_CB_SEQUENCE
    status: nfsstat4
    resok: CB_SEQUENCE4resok | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4_OK:
            if self.resok is None:
                raise _ok_arm_missing("CB_SEQUENCE4res")
            self.resok.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = dec.enum(nfsstat4, "CB_SEQUENCE4res.status")
        if status == nfsstat4.NFS4_OK:
            return cls(status, CB_SEQUENCE4resok.unpack(dec))
        return cls(status)


# -- CB_WANTS_CANCELLED, CB_NOTIFY_LOCK, RFC 8881 sections 20.10 and 20.11 -------------
@dataclass(slots=True)
class CB_WANTS_CANCELLED4args:
    """CB_WANTS_CANCELLED4args, RFC 8881 section 20.10."""

    OPNUM: ClassVar[nfs_cb_opnum4] = nfs_cb_opnum4.OP_CB_WANTS_CANCELLED
    cwca_contended_wants_cancelled: bool
    cwca_resourced_wants_cancelled: bool

    def pack(self, enc: Encoder) -> None:
        enc.boolean(self.cwca_contended_wants_cancelled)
        enc.boolean(self.cwca_resourced_wants_cancelled)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.boolean("CB_WANTS_CANCELLED4args.cwca_contended_wants_cancelled"),
            dec.boolean("CB_WANTS_CANCELLED4args.cwca_resourced_wants_cancelled"),
        )


class CB_WANTS_CANCELLED4res(CbStatusOnly4res):
    """CB_WANTS_CANCELLED4res (RFC: cwcr_status), RFC 8881 section 20.10."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_cb_opnum4] = nfs_cb_opnum4.OP_CB_WANTS_CANCELLED


@dataclass(slots=True)
class CB_NOTIFY_LOCK4args:
    """CB_NOTIFY_LOCK4args, RFC 8881 section 20.11: a blocked lock on ``cnla_fh`` may
    now be available to ``cnla_lock_owner``."""

    OPNUM: ClassVar[nfs_cb_opnum4] = nfs_cb_opnum4.OP_CB_NOTIFY_LOCK
    cnla_fh: bytes
    cnla_lock_owner: state_owner4

    def pack(self, enc: Encoder) -> None:
        enc.opaque(self.cnla_fh)
        self.cnla_lock_owner.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        fh = dec.opaque("CB_NOTIFY_LOCK4args.cnla_fh", NFS4_FHSIZE)
        return cls(fh, state_owner4.unpack(dec))


class CB_NOTIFY_LOCK4res(CbStatusOnly4res):
    """CB_NOTIFY_LOCK4res (RFC: cnlr_status), RFC 8881 section 20.11."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_cb_opnum4] = nfs_cb_opnum4.OP_CB_NOTIFY_LOCK


# -- CB_ILLEGAL, RFC 8881 section 20.13 ------------------------------------------------
class CB_ILLEGAL4res(CbStatusOnly4res):
    """CB_ILLEGAL4res, RFC 8881 section 20.13: the result for an unknown callback
    operation (status NFS4ERR_OP_ILLEGAL)."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_cb_opnum4] = nfs_cb_opnum4.OP_CB_ILLEGAL


# -- registries and CB_COMPOUND, RFC 8881 section 19.2 ---------------------------------
CbArgOp: TypeAlias = (
    CB_GETATTR4args
    | CB_RECALL4args
    | CB_RECALL_ANY4args
    | CB_RECALLABLE_OBJ_AVAIL4args
    | CB_RECALL_SLOT4args
    | CB_SEQUENCE4args
    | CB_WANTS_CANCELLED4args
    | CB_NOTIFY_LOCK4args
)
"""Any callback operation's arguments (arms of RFC 5662 ``nfs_cb_argop4``)."""

CbResOp: TypeAlias = (
    CB_GETATTR4res
    | CB_RECALL4res
    | CB_RECALL_ANY4res
    | CB_RECALLABLE_OBJ_AVAIL4res
    | CB_RECALL_SLOT4res
    | CB_SEQUENCE4res
    | CB_WANTS_CANCELLED4res
    | CB_NOTIFY_LOCK4res
    | CB_ILLEGAL4res
)
"""Any callback operation's result (arms of RFC 5662 ``nfs_cb_resop4``)."""

_CB_ARG_CLASSES: Final[tuple[type[CbArgOp], ...]] = (
    CB_GETATTR4args,
    CB_RECALL4args,
    CB_RECALL_ANY4args,
    CB_RECALLABLE_OBJ_AVAIL4args,
    CB_RECALL_SLOT4args,
    CB_SEQUENCE4args,
    CB_WANTS_CANCELLED4args,
    CB_NOTIFY_LOCK4args,
)
_CB_RES_CLASSES: Final[tuple[type[CbResOp], ...]] = (
    CB_GETATTR4res,
    CB_RECALL4res,
    CB_RECALL_ANY4res,
    CB_RECALLABLE_OBJ_AVAIL4res,
    CB_RECALL_SLOT4res,
    CB_SEQUENCE4res,
    CB_WANTS_CANCELLED4res,
    CB_NOTIFY_LOCK4res,
    CB_ILLEGAL4res,
)

CB_ARGS_BY_OPNUM: Final[dict[nfs_cb_opnum4, type[CbArgOp]]] = {
    cls.OPNUM: cls for cls in _CB_ARG_CLASSES
}
"""Argument class of each callback operation decoded here (not CB_LAYOUTRECALL,
CB_NOTIFY, CB_PUSH_DELEG, CB_NOTIFY_DEVICEID)."""
CB_RES_BY_OPNUM: Final[dict[nfs_cb_opnum4, type[CbResOp]]] = {
    cls.OPNUM: cls for cls in _CB_RES_CLASSES
}


def unpack_cb_argop(dec: Decoder) -> CbArgOp:
    """One ``nfs_cb_argop4``.

    Raises:
        XdrError: naming ``nfs_cb_argop4`` for an operation with no args class (the
            client answers that operation with NFS4ERR_NOTSUPP or CB_ILLEGAL4res).
    """
    pos = dec.offset
    opnum = dec.enum(nfs_cb_opnum4, "nfs_cb_argop4.argop")
    cls = CB_ARGS_BY_OPNUM.get(opnum)
    if cls is None:
        raise XdrError("nfs_cb_argop4", pos, f"unknown operation {int(opnum)}")
    return cls.unpack(dec)


def unpack_cb_resop(dec: Decoder) -> CbResOp:
    """One ``nfs_cb_resop4``; XdrError naming ``nfs_cb_resop4`` for an unknown opnum."""
    pos = dec.offset
    opnum = dec.enum(nfs_cb_opnum4, "nfs_cb_resop4.resop")
    cls = CB_RES_BY_OPNUM.get(opnum)
    if cls is None:
        raise XdrError("nfs_cb_resop4", pos, f"unknown operation {int(opnum)}")
    return cls.unpack(dec)


@dataclass(slots=True)
class CB_COMPOUND4args:
    """CB_COMPOUND4args, RFC 8881 section 19.2: ``callback_ident`` is 0 in NFSv4.1."""

    tag: bytes
    minorversion: int
    callback_ident: int
    argarray: list[CbArgOp]

    def pack(self, enc: Encoder) -> None:
        enc.opaque(self.tag)
        enc.uint32(self.minorversion)
        enc.uint32(self.callback_ident)
        enc.uint32(len(self.argarray))
        for op in self.argarray:
            enc.int32(op.OPNUM)
            op.pack(enc)

    @classmethod
    def unpack_head(cls, dec: Decoder) -> tuple[bytes, int, int, int]:
        """``(tag, minorversion, callback_ident, count)``, for decoding the operations
        one by one with ``unpack_cb_argop`` (to answer an unknown one at its index)."""
        tag = dec.opaque("CB_COMPOUND4args.tag")
        minorversion = dec.uint32("CB_COMPOUND4args.minorversion")
        ident = dec.uint32("CB_COMPOUND4args.callback_ident")
        pos = dec.offset
        count = dec.uint32("CB_COMPOUND4args.argarray")
        if count > MAX_COMPOUND_OPS or count * 4 > dec.remaining():
            raise XdrError("CB_COMPOUND4args.argarray", pos, f"bad operation count {count}")
        return tag, minorversion, ident, count

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        tag, minorversion, ident, count = cls.unpack_head(dec)
        return cls(tag, minorversion, ident, [unpack_cb_argop(dec) for _ in range(count)])


@dataclass(slots=True)
class CB_COMPOUND4res:
    """CB_COMPOUND4res, RFC 8881 section 19.2."""

    status: nfsstat4
    tag: bytes
    resarray: list[CbResOp]

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        enc.opaque(self.tag)
        enc.uint32(len(self.resarray))
        for res in self.resarray:
            enc.int32(res.OPNUM)
            res.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = dec.enum(nfsstat4, "CB_COMPOUND4res.status")
        tag = dec.opaque("CB_COMPOUND4res.tag")
        resarray = dec.array(
            lambda: unpack_cb_resop(dec), "CB_COMPOUND4res.resarray", MAX_COMPOUND_OPS, 8
        )
        return cls(status, tag, resarray)
