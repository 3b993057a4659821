"""NFSv4.1 structures, unions, operation arguments and results, COMPOUND.

Types and field names are those of RFC 5662; semantics are in RFC 8881 (section numbers
in each docstring).  Conventions (see ``session.xdr.codec``):

* a struct is a ``@dataclass(slots=True)`` with ``pack(enc)`` and ``unpack(dec)``;
* a union is a dataclass holding the discriminant plus one optional field per arm,
  named after the RFC arm; decoding an unknown discriminant raises ``XdrError`` naming
  the union, packing with the selected arm missing raises ``ValueError``;
* each operation has ``OPNAME4args`` and ``OPNAME4res`` with ``OPNUM``; every result's
  first field is ``status`` (RFC 5662 calls some of them ``sr_status``, ``eir_status``
  ...), the OK arm is ``resok`` (RFC: ``resok4``) unless the RFC arm is a bare value;
* opaque data (filehandles, verifiers, session ids, file names) is ``bytes``; UTF-8
  strings that are not file names (owners, server names) are ``str``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Final, Self, TypeAlias, TypeVar

from session.errors import XdrError
from session.xdr.codec import Decoder, Encoder
from session.xdr.const import (
    AUTH_NONE,
    AUTH_SYS,
    NFS4_FHSIZE,
    NFS4_OPAQUE_LIMIT,
    NFS4_OTHER_SIZE,
    NFS4_SESSIONID_SIZE,
    NFS4_UINT32_MAX,
    NFS4_VERIFIER_SIZE,
    RPCSEC_GSS,
    channel_dir_from_client4,
    channel_dir_from_server4,
    createmode4,
    fs4_status_type,
    limit_by4,
    nfs_ftype4,
    nfs_lock_type4,
    nfs_opnum4,
    nfsstat4,
    open_claim_type4,
    open_delegation_type4,
    opentype4,
    rpc_gss_svc_t,
    secinfo_style4,
    stable_how4,
    state_protect_how4,
    time_how4,
    why_no_delegation4,
)

_T = TypeVar("_T")

# Plain typedefs of RFC 5662, for annotations.
nfs_fh4: TypeAlias = bytes  # opaque<NFS4_FHSIZE>
verifier4: TypeAlias = bytes  # opaque[NFS4_VERIFIER_SIZE]
sessionid4: TypeAlias = bytes  # opaque[NFS4_SESSIONID_SIZE]
component4: TypeAlias = bytes  # a file name, as FUSE gives it
linktext4: TypeAlias = bytes  # a symlink target
bitmap4: TypeAlias = list[int]  # uint32 words, bit n of the set is word n//32 bit n%32
pathname4: TypeAlias = list[str]  # components of a path (fs_locations)
sec_oid4: TypeAlias = bytes

MAX_COMPOUND_OPS: Final = 1024
"""Bound on argarray/resarray counts when decoding (RFC 8881 lets the session's
ca_maxoperations decide; this is only a guard against hostile counts)."""


# -- helpers ---------------------------------------------------------------------------
def _arm(value: _T | None, union: str, arm: str) -> _T:
    """The selected arm of a union being packed; ValueError if it was not given."""
    if value is None:
        raise ValueError(f"{union}: arm {arm!r} is required for this discriminant")
    return value


def _bad_discriminant(union: str, pos: int, value: int) -> XdrError:
    return XdrError(union, pos, f"unknown discriminant {value}")


def pack_bitmap4(enc: Encoder, words: Sequence[int]) -> None:
    """bitmap4: a counted array of uint32 words (RFC 8881 section 3.2)."""
    enc.uint32(len(words))
    for word in words:
        enc.uint32(word)


def unpack_bitmap4(dec: Decoder, what: str = "bitmap4") -> list[int]:
    return dec.uint32_array(what)


def _pack_pathname4(enc: Encoder, path: Sequence[str]) -> None:
    enc.uint32(len(path))
    for component in path:
        enc.string(component)


def _unpack_pathname4(dec: Decoder, what: str = "pathname4") -> list[str]:
    return dec.array(lambda: dec.string(what), what)


def _pack_utf8_array(enc: Encoder, items: Sequence[str]) -> None:
    enc.uint32(len(items))
    for item in items:
        enc.string(item)


def _pack_opaque_array(enc: Encoder, items: Sequence[bytes]) -> None:
    enc.uint32(len(items))
    for item in items:
        enc.opaque(item)


def _unpack_verifier(dec: Decoder, what: str = "verifier4") -> bytes:
    return dec.fixed_opaque(NFS4_VERIFIER_SIZE, what)


def _unpack_sessionid(dec: Decoder, what: str = "sessionid4") -> bytes:
    return dec.fixed_opaque(NFS4_SESSIONID_SIZE, what)


def _unpack_fh(dec: Decoder, what: str = "nfs_fh4") -> bytes:
    return dec.opaque(what, NFS4_FHSIZE)


# -- basic data types, RFC 8881 section 3.3 --------------------------------------------
@dataclass(frozen=True, slots=True)
class stateid4:
    """stateid4, RFC 8881 sections 3.3.12 and 8.2: ``seqid`` (uint32) and 12 opaque ``other`` bytes.

    The special stateids of RFC 8881 section 8.2.3 are module constants:
    ``ANONYMOUS_STATEID``, ``READ_BYPASS_STATEID``, ``CURRENT_STATEID``,
    ``INVALID_STATEID``.
    """

    seqid: int
    other: bytes

    def pack(self, enc: Encoder) -> None:
        enc.uint32(self.seqid)
        enc.fixed_opaque(NFS4_OTHER_SIZE, self.other)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.uint32("stateid4.seqid"), dec.fixed_opaque(NFS4_OTHER_SIZE, "stateid4"))

    def is_special(self) -> bool:
        """True for the stateids whose ``other`` is all zeros or all ones (section 8.2.3)."""
        return self.other in (_OTHER_ZERO, _OTHER_ONES)


_OTHER_ZERO: Final = bytes(NFS4_OTHER_SIZE)
_OTHER_ONES: Final = b"\xff" * NFS4_OTHER_SIZE

ANONYMOUS_STATEID: Final = stateid4(0, _OTHER_ZERO)
"""All zeros: I/O without open state (RFC 8881 section 8.2.3)."""
READ_BYPASS_STATEID: Final = stateid4(NFS4_UINT32_MAX, _OTHER_ONES)
"""All ones: READ bypassing locks and share reservations (section 8.2.3)."""
CURRENT_STATEID: Final = stateid4(1, _OTHER_ZERO)
"""seqid 1, other zero: the current stateid of the COMPOUND (section 16.2.3.1.2)."""
INVALID_STATEID: Final = stateid4(NFS4_UINT32_MAX, _OTHER_ZERO)
"""seqid all ones, other zero: never valid (section 8.2.3)."""


@dataclass(frozen=True, slots=True)
class nfstime4:
    """nfstime4, RFC 8881 section 3.3.1: signed ``seconds`` since the epoch (int64) and
    ``nseconds`` (uint32, below 10**9)."""

    seconds: int
    nseconds: int

    def pack(self, enc: Encoder) -> None:
        enc.int64(self.seconds)
        enc.uint32(self.nseconds)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.int64("nfstime4.seconds"), dec.uint32("nfstime4.nseconds"))


@dataclass(frozen=True, slots=True)
class settime4:
    """settime4 union, RFC 8881 section 3.3.3: ``time`` only for SET_TO_CLIENT_TIME4."""

    set_it: time_how4
    time: nfstime4 | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.set_it)
        if self.set_it == time_how4.SET_TO_CLIENT_TIME4:
            _arm(self.time, "settime4", "time").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        how = dec.enum(time_how4, "settime4.set_it")
        if how == time_how4.SET_TO_CLIENT_TIME4:
            return cls(how, nfstime4.unpack(dec))
        return cls(how)


@dataclass(frozen=True, slots=True)
class specdata4:
    """specdata4 (device major and minor), RFC 8881 section 3.3.4."""

    specdata1: int
    specdata2: int

    def pack(self, enc: Encoder) -> None:
        enc.uint32(self.specdata1)
        enc.uint32(self.specdata2)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.uint32("specdata4"), dec.uint32("specdata4"))


@dataclass(frozen=True, slots=True)
class fsid4:
    """fsid4, RFC 8881 section 3.3.5: ``major`` and ``minor`` (uint64 each)."""

    major: int
    minor: int

    def pack(self, enc: Encoder) -> None:
        enc.uint64(self.major)
        enc.uint64(self.minor)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.uint64("fsid4.major"), dec.uint64("fsid4.minor"))


@dataclass(frozen=True, slots=True)
class change_policy4:
    """change_policy4, RFC 8881 section 3.3.6 (attribute change_policy)."""

    cp_major: int
    cp_minor: int

    def pack(self, enc: Encoder) -> None:
        enc.uint64(self.cp_major)
        enc.uint64(self.cp_minor)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.uint64("change_policy4"), dec.uint64("change_policy4"))


@dataclass(frozen=True, slots=True)
class change_info4:
    """change_info4, RFC 8881 section 3.3.8 (directory change attribute before/after an
    operation; ``atomic`` says both were read atomically with it)."""

    atomic: bool
    before: int
    after: int

    def pack(self, enc: Encoder) -> None:
        enc.boolean(self.atomic)
        enc.uint64(self.before)
        enc.uint64(self.after)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.boolean("change_info4.atomic"),
            dec.uint64("change_info4.before"),
            dec.uint64("change_info4.after"),
        )


@dataclass(frozen=True, slots=True)
class state_owner4:
    """state_owner4 (open_owner4 and lock_owner4), RFC 8881 section 3.3.10:
    ``clientid`` (uint64) and ``owner`` (opaque, at most NFS4_OPAQUE_LIMIT bytes)."""

    clientid: int
    owner: bytes

    def pack(self, enc: Encoder) -> None:
        enc.uint64(self.clientid)
        enc.opaque(self.owner)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.uint64("state_owner4.clientid"), dec.opaque("state_owner4", NFS4_OPAQUE_LIMIT)
        )


open_owner4: TypeAlias = state_owner4
lock_owner4: TypeAlias = state_owner4


@dataclass(frozen=True, slots=True)
class client_owner4:
    """client_owner4, RFC 8881 section 2.4: ``co_verifier`` (8 bytes, changes on every
    client reboot) and ``co_ownerid`` (opaque, stable across reboots)."""

    co_verifier: bytes
    co_ownerid: bytes

    def pack(self, enc: Encoder) -> None:
        enc.fixed_opaque(NFS4_VERIFIER_SIZE, self.co_verifier)
        enc.opaque(self.co_ownerid)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            _unpack_verifier(dec, "client_owner4.co_verifier"),
            dec.opaque("client_owner4.co_ownerid", NFS4_OPAQUE_LIMIT),
        )


@dataclass(frozen=True, slots=True)
class server_owner4:
    """server_owner4, RFC 8881 section 2.5: ``so_minor_id`` (uint64) and
    ``so_major_id`` (opaque); compared for trunking (section 2.10.5)."""

    so_minor_id: int
    so_major_id: bytes

    def pack(self, enc: Encoder) -> None:
        enc.uint64(self.so_minor_id)
        enc.opaque(self.so_major_id)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.uint64("server_owner4.so_minor_id"),
            dec.opaque("server_owner4.so_major_id", NFS4_OPAQUE_LIMIT),
        )


@dataclass(frozen=True, slots=True)
class nfs_impl_id4:
    """nfs_impl_id4, RFC 8881 section 3.3.21: implementation domain, name and date."""

    nii_domain: str
    nii_name: str
    nii_date: nfstime4

    def pack(self, enc: Encoder) -> None:
        enc.string(self.nii_domain)
        enc.string(self.nii_name)
        self.nii_date.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.string("nfs_impl_id4.nii_domain"),
            dec.string("nfs_impl_id4.nii_name"),
            nfstime4.unpack(dec),
        )


@dataclass(frozen=True, slots=True)
class nfsace4:
    """nfsace4, RFC 8881 section 6.2.1: ``type``, ``flag``, ``access_mask`` (uint32
    each, ACE4_* constants) and ``who`` (a principal, UTF-8)."""

    type: int
    flag: int
    access_mask: int
    who: str

    def pack(self, enc: Encoder) -> None:
        enc.uint32(self.type)
        enc.uint32(self.flag)
        enc.uint32(self.access_mask)
        enc.string(self.who)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.uint32("nfsace4.type"),
            dec.uint32("nfsace4.flag"),
            dec.uint32("nfsace4.access_mask"),
            dec.string("nfsace4.who"),
        )


@dataclass(slots=True)
class nfsacl41:
    """nfsacl41 (attributes dacl and sacl), RFC 8881 section 6.2.3."""

    na41_flag: int
    na41_aces: list[nfsace4]

    def pack(self, enc: Encoder) -> None:
        enc.uint32(self.na41_flag)
        enc.struct_array(self.na41_aces)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.uint32("nfsacl41.na41_flag"), dec.struct_array(nfsace4, min_item=16))


@dataclass(frozen=True, slots=True)
class mode_masked4:
    """mode_masked4 (attribute mode_set_masked), RFC 8881 section 6.2.5."""

    mm_value_to_set: int
    mm_mask_bits: int

    def pack(self, enc: Encoder) -> None:
        enc.uint32(self.mm_value_to_set)
        enc.uint32(self.mm_mask_bits)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.uint32("mode_masked4"), dec.uint32("mode_masked4"))


@dataclass(slots=True)
class fattr4:
    """fattr4, RFC 8881 section 3.3.7: the attribute bitmap and the packed values, raw
    as on the wire (``session.xdr.fattr.decode_fattr4`` decodes the values).

    ``attrmask`` is bitmap4 words; ``attr_vals`` the concatenated XDR of each attribute
    present, in increasing attribute number.
    """

    attrmask: list[int]
    attr_vals: bytes

    def pack(self, enc: Encoder) -> None:
        pack_bitmap4(enc, self.attrmask)
        enc.opaque(self.attr_vals)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(unpack_bitmap4(dec, "fattr4.attrmask"), dec.opaque("fattr4.attr_vals"))


# -- file system locations, RFC 8881 sections 11.16 - 11.18 ----------------------------
@dataclass(slots=True)
class fs_location4:
    """fs_location4, RFC 8881 section 11.16: ``server`` names (host names or addresses,
    UTF-8) and ``rootpath`` (pathname4 on those servers)."""

    server: list[str]
    rootpath: list[str]

    def pack(self, enc: Encoder) -> None:
        _pack_utf8_array(enc, self.server)
        _pack_pathname4(enc, self.rootpath)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        server = dec.array(lambda: dec.string("fs_location4.server"), "fs_location4.server")
        return cls(server, _unpack_pathname4(dec, "fs_location4.rootpath"))


@dataclass(slots=True)
class fs_locations4:
    """fs_locations4 (attribute fs_locations), RFC 8881 section 11.16."""

    fs_root: list[str]
    locations: list[fs_location4]

    def pack(self, enc: Encoder) -> None:
        _pack_pathname4(enc, self.fs_root)
        enc.struct_array(self.locations)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        fs_root = _unpack_pathname4(dec, "fs_locations4.fs_root")
        return cls(fs_root, dec.struct_array(fs_location4, min_item=8))


@dataclass(slots=True)
class fs_locations_server4:
    """fs_locations_server4, RFC 8881 section 11.17.1: ``fls_currency`` (int32, seconds),
    ``fls_info`` (flag bytes indexed by FSLI4BX_*) and ``fls_server`` (UTF-8)."""

    fls_currency: int
    fls_info: bytes
    fls_server: str

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.fls_currency)
        enc.opaque(self.fls_info)
        enc.string(self.fls_server)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.int32("fs_locations_server4.fls_currency"),
            dec.opaque("fs_locations_server4.fls_info"),
            dec.string("fs_locations_server4.fls_server"),
        )


@dataclass(slots=True)
class fs_locations_item4:
    """fs_locations_item4, RFC 8881 section 11.17.3: servers sharing one ``fli_rootpath``."""

    fli_entries: list[fs_locations_server4]
    fli_rootpath: list[str]

    def pack(self, enc: Encoder) -> None:
        enc.struct_array(self.fli_entries)
        _pack_pathname4(enc, self.fli_rootpath)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        entries = dec.struct_array(fs_locations_server4, min_item=12)
        return cls(entries, _unpack_pathname4(dec, "fs_locations_item4.fli_rootpath"))


@dataclass(slots=True)
class fs_locations_info4:
    """fs_locations_info4 (attribute fs_locations_info), RFC 8881 section 11.17.2:
    ``fli_flags`` (FSLI4IF_*), ``fli_valid_for`` (int32, seconds), ``fli_fs_root``,
    ``fli_items``."""

    fli_flags: int
    fli_valid_for: int
    fli_fs_root: list[str]
    fli_items: list[fs_locations_item4]

    def pack(self, enc: Encoder) -> None:
        enc.uint32(self.fli_flags)
        enc.int32(self.fli_valid_for)
        _pack_pathname4(enc, self.fli_fs_root)
        enc.struct_array(self.fli_items)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.uint32("fs_locations_info4.fli_flags"),
            dec.int32("fs_locations_info4.fli_valid_for"),
            _unpack_pathname4(dec, "fs_locations_info4.fli_fs_root"),
            dec.struct_array(fs_locations_item4, min_item=8),
        )


@dataclass(slots=True)
class fs4_status:
    """fs4_status (attribute fs_status), RFC 8881 section 11.18."""

    fss_absent: bool
    fss_type: fs4_status_type
    fss_source: str
    fss_current: str
    fss_age: int
    fss_version: nfstime4

    def pack(self, enc: Encoder) -> None:
        enc.boolean(self.fss_absent)
        enc.int32(self.fss_type)
        enc.string(self.fss_source)
        enc.string(self.fss_current)
        enc.int32(self.fss_age)
        self.fss_version.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.boolean("fs4_status.fss_absent"),
            dec.enum(fs4_status_type, "fs4_status.fss_type"),
            dec.string("fs4_status.fss_source"),
            dec.string("fs4_status.fss_current"),
            dec.int32("fs4_status.fss_age"),
            nfstime4.unpack(dec),
        )


# -- security: RPCSEC_GSS info, callback security, state protection --------------------
@dataclass(slots=True)
class rpcsec_gss_info:
    """rpcsec_gss_info, RFC 8881 section 18.29: mechanism ``oid`` (DER bytes), ``qop``,
    ``service``."""

    oid: bytes
    qop: int
    service: rpc_gss_svc_t

    def pack(self, enc: Encoder) -> None:
        enc.opaque(self.oid)
        enc.uint32(self.qop)
        enc.int32(self.service)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.opaque("rpcsec_gss_info.oid"),
            dec.uint32("rpcsec_gss_info.qop"),
            dec.enum(rpc_gss_svc_t, "rpcsec_gss_info.service"),
        )


@dataclass(slots=True)
class secinfo4:
    """secinfo4 union, RFC 8881 section 18.29: ``flavor_info`` only for RPCSEC_GSS (6)."""

    flavor: int
    flavor_info: rpcsec_gss_info | None = None

    def pack(self, enc: Encoder) -> None:
        enc.uint32(self.flavor)
        if self.flavor == RPCSEC_GSS:
            _arm(self.flavor_info, "secinfo4", "flavor_info").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        flavor = dec.uint32("secinfo4.flavor")
        if flavor == RPCSEC_GSS:
            return cls(flavor, rpcsec_gss_info.unpack(dec))
        return cls(flavor)


@dataclass(slots=True)
class authsys_parms:
    """authsys_parms (AUTH_SYS credential body), RFC 5531 appendix A: ``stamp``,
    ``machinename`` (at most 255 bytes), ``uid``, ``gid``, ``gids`` (at most 16)."""

    stamp: int
    machinename: str
    uid: int
    gid: int
    gids: list[int]

    def pack(self, enc: Encoder) -> None:
        enc.uint32(self.stamp)
        enc.string(self.machinename)
        enc.uint32(self.uid)
        enc.uint32(self.gid)
        enc.array(self.gids, enc.uint32)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.uint32("authsys_parms.stamp"),
            dec.string("authsys_parms.machinename", 255),
            dec.uint32("authsys_parms.uid"),
            dec.uint32("authsys_parms.gid"),
            dec.uint32_array("authsys_parms.gids", 16),
        )


@dataclass(slots=True)
class gss_cb_handles4:
    """gss_cb_handles4, RFC 8881 section 18.36: RPCSEC_GSS handles for the back channel."""

    gcbp_service: rpc_gss_svc_t
    gcbp_handle_from_server: bytes
    gcbp_handle_from_client: bytes

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.gcbp_service)
        enc.opaque(self.gcbp_handle_from_server)
        enc.opaque(self.gcbp_handle_from_client)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.enum(rpc_gss_svc_t, "gss_cb_handles4.gcbp_service"),
            dec.opaque("gss_cb_handles4.gcbp_handle_from_server"),
            dec.opaque("gss_cb_handles4.gcbp_handle_from_client"),
        )


@dataclass(slots=True)
class callback_sec_parms4:
    """callback_sec_parms4 union, RFC 8881 section 18.36, on ``cb_secflavor``:
    AUTH_NONE (void), AUTH_SYS (``cbsp_sys_cred``), RPCSEC_GSS (``cbsp_gss_handles``)."""

    cb_secflavor: int
    cbsp_sys_cred: authsys_parms | None = None
    cbsp_gss_handles: gss_cb_handles4 | None = None

    def pack(self, enc: Encoder) -> None:
        enc.uint32(self.cb_secflavor)
        if self.cb_secflavor == AUTH_NONE:
            return
        if self.cb_secflavor == AUTH_SYS:
            _arm(self.cbsp_sys_cred, "callback_sec_parms4", "cbsp_sys_cred").pack(enc)
        elif self.cb_secflavor == RPCSEC_GSS:
            _arm(self.cbsp_gss_handles, "callback_sec_parms4", "cbsp_gss_handles").pack(enc)
        else:
            raise ValueError(f"callback_sec_parms4: unknown flavor {self.cb_secflavor}")

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        pos = dec.offset
        flavor = dec.uint32("callback_sec_parms4.cb_secflavor")
        if flavor == AUTH_NONE:
            return cls(flavor)
        if flavor == AUTH_SYS:
            return cls(flavor, cbsp_sys_cred=authsys_parms.unpack(dec))
        if flavor == RPCSEC_GSS:
            return cls(flavor, cbsp_gss_handles=gss_cb_handles4.unpack(dec))
        raise _bad_discriminant("callback_sec_parms4", pos, flavor)


@dataclass(slots=True)
class state_protect_ops4:
    """state_protect_ops4, RFC 8881 section 18.35: operation bitmaps for SP4_MACH_CRED."""

    spo_must_enforce: list[int]
    spo_must_allow: list[int]

    def pack(self, enc: Encoder) -> None:
        pack_bitmap4(enc, self.spo_must_enforce)
        pack_bitmap4(enc, self.spo_must_allow)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            unpack_bitmap4(dec, "state_protect_ops4.spo_must_enforce"),
            unpack_bitmap4(dec, "state_protect_ops4.spo_must_allow"),
        )


@dataclass(slots=True)
class ssv_sp_parms4:
    """ssv_sp_parms4, RFC 8881 section 18.35 (SP4_SSV request parameters)."""

    ssp_ops: state_protect_ops4
    ssp_hash_algs: list[bytes]
    ssp_encr_algs: list[bytes]
    ssp_window: int
    ssp_num_gss_handles: int

    def pack(self, enc: Encoder) -> None:
        self.ssp_ops.pack(enc)
        _pack_opaque_array(enc, self.ssp_hash_algs)
        _pack_opaque_array(enc, self.ssp_encr_algs)
        enc.uint32(self.ssp_window)
        enc.uint32(self.ssp_num_gss_handles)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        ops = state_protect_ops4.unpack(dec)
        hash_algs = dec.array(lambda: dec.opaque("sec_oid4"), "ssv_sp_parms4.ssp_hash_algs")
        encr_algs = dec.array(lambda: dec.opaque("sec_oid4"), "ssv_sp_parms4.ssp_encr_algs")
        return cls(
            ops,
            hash_algs,
            encr_algs,
            dec.uint32("ssv_sp_parms4.ssp_window"),
            dec.uint32("ssv_sp_parms4.ssp_num_gss_handles"),
        )


@dataclass(slots=True)
class ssv_prot_info4:
    """ssv_prot_info4, RFC 8881 section 18.35 (SP4_SSV reply parameters)."""

    spi_ops: state_protect_ops4
    spi_hash_alg: int
    spi_encr_alg: int
    spi_ssv_len: int
    spi_window: int
    spi_handles: list[bytes]

    def pack(self, enc: Encoder) -> None:
        self.spi_ops.pack(enc)
        enc.uint32(self.spi_hash_alg)
        enc.uint32(self.spi_encr_alg)
        enc.uint32(self.spi_ssv_len)
        enc.uint32(self.spi_window)
        _pack_opaque_array(enc, self.spi_handles)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        ops = state_protect_ops4.unpack(dec)
        return cls(
            ops,
            dec.uint32("ssv_prot_info4.spi_hash_alg"),
            dec.uint32("ssv_prot_info4.spi_encr_alg"),
            dec.uint32("ssv_prot_info4.spi_ssv_len"),
            dec.uint32("ssv_prot_info4.spi_window"),
            dec.array(lambda: dec.opaque("gsshandle4_t"), "ssv_prot_info4.spi_handles"),
        )


@dataclass(slots=True)
class state_protect4_a:
    """state_protect4_a union (EXCHANGE_ID argument), RFC 8881 section 18.35."""

    spa_how: state_protect_how4
    spa_mach_ops: state_protect_ops4 | None = None
    spa_ssv_parms: ssv_sp_parms4 | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.spa_how)
        if self.spa_how == state_protect_how4.SP4_NONE:
            return
        if self.spa_how == state_protect_how4.SP4_MACH_CRED:
            _arm(self.spa_mach_ops, "state_protect4_a", "spa_mach_ops").pack(enc)
        elif self.spa_how == state_protect_how4.SP4_SSV:
            _arm(self.spa_ssv_parms, "state_protect4_a", "spa_ssv_parms").pack(enc)
        else:
            raise ValueError(f"state_protect4_a: unknown spa_how {self.spa_how}")

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        pos = dec.offset
        how = dec.enum(state_protect_how4, "state_protect4_a.spa_how")
        if how == state_protect_how4.SP4_NONE:
            return cls(how)
        if how == state_protect_how4.SP4_MACH_CRED:
            return cls(how, spa_mach_ops=state_protect_ops4.unpack(dec))
        if how == state_protect_how4.SP4_SSV:
            return cls(how, spa_ssv_parms=ssv_sp_parms4.unpack(dec))
        raise _bad_discriminant("state_protect4_a", pos, how)


@dataclass(slots=True)
class state_protect4_r:
    """state_protect4_r union (EXCHANGE_ID result), RFC 8881 section 18.35."""

    spr_how: state_protect_how4
    spr_mach_ops: state_protect_ops4 | None = None
    spr_ssv_info: ssv_prot_info4 | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.spr_how)
        if self.spr_how == state_protect_how4.SP4_NONE:
            return
        if self.spr_how == state_protect_how4.SP4_MACH_CRED:
            _arm(self.spr_mach_ops, "state_protect4_r", "spr_mach_ops").pack(enc)
        elif self.spr_how == state_protect_how4.SP4_SSV:
            _arm(self.spr_ssv_info, "state_protect4_r", "spr_ssv_info").pack(enc)
        else:
            raise ValueError(f"state_protect4_r: unknown spr_how {self.spr_how}")

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        pos = dec.offset
        how = dec.enum(state_protect_how4, "state_protect4_r.spr_how")
        if how == state_protect_how4.SP4_NONE:
            return cls(how)
        if how == state_protect_how4.SP4_MACH_CRED:
            return cls(how, spr_mach_ops=state_protect_ops4.unpack(dec))
        if how == state_protect_how4.SP4_SSV:
            return cls(how, spr_ssv_info=ssv_prot_info4.unpack(dec))
        raise _bad_discriminant("state_protect4_r", pos, how)


@dataclass(slots=True)
class channel_attrs4:
    """channel_attrs4, RFC 8881 section 18.36: sizes in bytes, ``ca_maxoperations`` and
    ``ca_maxrequests`` (slots) are counts; ``ca_rdma_ird`` has at most one element."""

    ca_headerpadsize: int
    ca_maxrequestsize: int
    ca_maxresponsesize: int
    ca_maxresponsesize_cached: int
    ca_maxoperations: int
    ca_maxrequests: int
    ca_rdma_ird: list[int]

    def pack(self, enc: Encoder) -> None:
        enc.uint32(self.ca_headerpadsize)
        enc.uint32(self.ca_maxrequestsize)
        enc.uint32(self.ca_maxresponsesize)
        enc.uint32(self.ca_maxresponsesize_cached)
        enc.uint32(self.ca_maxoperations)
        enc.uint32(self.ca_maxrequests)
        if len(self.ca_rdma_ird) > 1:
            raise ValueError("channel_attrs4.ca_rdma_ird holds at most one value")
        enc.array(self.ca_rdma_ird, enc.uint32)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.uint32("channel_attrs4.ca_headerpadsize"),
            dec.uint32("channel_attrs4.ca_maxrequestsize"),
            dec.uint32("channel_attrs4.ca_maxresponsesize"),
            dec.uint32("channel_attrs4.ca_maxresponsesize_cached"),
            dec.uint32("channel_attrs4.ca_maxoperations"),
            dec.uint32("channel_attrs4.ca_maxrequests"),
            dec.uint32_array("channel_attrs4.ca_rdma_ird", 1),
        )


# -- operation bases -------------------------------------------------------------------
@dataclass(slots=True)
class Void4args:
    """Base of the argument classes with no fields (PUTROOTFH4args, GETFH4args, ...)."""

    def pack(self, enc: Encoder) -> None:
        return None

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls()


@dataclass(slots=True)
class StatusOnly4res:
    """Base of the results that are only a status (PUTFH4res, LOOKUP4res, ...)."""

    status: nfsstat4

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.enum(nfsstat4, cls.__name__ + ".status"))


def _status(dec: Decoder, res: str) -> nfsstat4:
    return dec.enum(nfsstat4, res + ".status")


# -- ACCESS, RFC 8881 section 18.1 -----------------------------------------------------
@dataclass(slots=True)
class ACCESS4args:
    """ACCESS4args, RFC 8881 section 18.1: ``access`` is a mask of ACCESS4_* bits."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_ACCESS
    access: int

    def pack(self, enc: Encoder) -> None:
        enc.uint32(self.access)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.uint32("ACCESS4args.access"))


@dataclass(slots=True)
class ACCESS4resok:
    """ACCESS4resok, RFC 8881 section 18.1: ``supported`` bits and granted ``access``."""

    supported: int
    access: int

    def pack(self, enc: Encoder) -> None:
        enc.uint32(self.supported)
        enc.uint32(self.access)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.uint32("ACCESS4resok.supported"), dec.uint32("ACCESS4resok.access"))


@dataclass(slots=True)
class ACCESS4res:
    """ACCESS4res, RFC 8881 section 18.1."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_ACCESS
    status: nfsstat4
    resok: ACCESS4resok | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4_OK:
            _arm(self.resok, "ACCESS4res", "resok").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "ACCESS4res")
        if status == nfsstat4.NFS4_OK:
            return cls(status, ACCESS4resok.unpack(dec))
        return cls(status)


# -- CLOSE, RFC 8881 section 18.2 ------------------------------------------------------
@dataclass(slots=True)
class CLOSE4args:
    """CLOSE4args, RFC 8881 section 18.2 (``seqid`` is ignored in NFSv4.1)."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_CLOSE
    seqid: int
    open_stateid: stateid4

    def pack(self, enc: Encoder) -> None:
        enc.uint32(self.seqid)
        self.open_stateid.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.uint32("CLOSE4args.seqid"), stateid4.unpack(dec))


@dataclass(slots=True)
class CLOSE4res:
    """CLOSE4res, RFC 8881 section 18.2: ``open_stateid`` on NFS4_OK."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_CLOSE
    status: nfsstat4
    open_stateid: stateid4 | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4_OK:
            _arm(self.open_stateid, "CLOSE4res", "open_stateid").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "CLOSE4res")
        if status == nfsstat4.NFS4_OK:
            return cls(status, stateid4.unpack(dec))
        return cls(status)


# -- COMMIT, RFC 8881 section 18.3 -----------------------------------------------------
@dataclass(slots=True)
class COMMIT4args:
    """COMMIT4args, RFC 8881 section 18.3: ``offset`` (bytes), ``count`` (bytes, 0 =
    to the end of file)."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_COMMIT
    offset: int
    count: int

    def pack(self, enc: Encoder) -> None:
        enc.uint64(self.offset)
        enc.uint32(self.count)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.uint64("COMMIT4args.offset"), dec.uint32("COMMIT4args.count"))


@dataclass(slots=True)
class COMMIT4resok:
    """COMMIT4resok, RFC 8881 section 18.3: the server's write verifier (8 bytes)."""

    writeverf: bytes

    def pack(self, enc: Encoder) -> None:
        enc.fixed_opaque(NFS4_VERIFIER_SIZE, self.writeverf)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(_unpack_verifier(dec, "COMMIT4resok.writeverf"))


@dataclass(slots=True)
class COMMIT4res:
    """COMMIT4res, RFC 8881 section 18.3."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_COMMIT
    status: nfsstat4
    resok: COMMIT4resok | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4_OK:
            _arm(self.resok, "COMMIT4res", "resok").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "COMMIT4res")
        if status == nfsstat4.NFS4_OK:
            return cls(status, COMMIT4resok.unpack(dec))
        return cls(status)


# -- CREATE, RFC 8881 section 18.4 -----------------------------------------------------
@dataclass(slots=True)
class createtype4:
    """createtype4 union, RFC 8881 section 18.4: ``linkdata`` for NF4LNK, ``devdata``
    for NF4BLK/NF4CHR, void otherwise (the server answers NFS4ERR_BADTYPE for types
    it cannot create, so unknown types decode)."""

    type: nfs_ftype4
    linkdata: bytes | None = None
    devdata: specdata4 | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.type)
        if self.type == nfs_ftype4.NF4LNK:
            enc.opaque(_arm(self.linkdata, "createtype4", "linkdata"))
        elif self.type in (nfs_ftype4.NF4BLK, nfs_ftype4.NF4CHR):
            _arm(self.devdata, "createtype4", "devdata").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        ftype = dec.enum(nfs_ftype4, "createtype4.type")
        if ftype == nfs_ftype4.NF4LNK:
            return cls(ftype, linkdata=dec.opaque("createtype4.linkdata"))
        if ftype in (nfs_ftype4.NF4BLK, nfs_ftype4.NF4CHR):
            return cls(ftype, devdata=specdata4.unpack(dec))
        return cls(ftype)


@dataclass(slots=True)
class CREATE4args:
    """CREATE4args, RFC 8881 section 18.4 (non-regular files)."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_CREATE
    objtype: createtype4
    objname: bytes
    createattrs: fattr4

    def pack(self, enc: Encoder) -> None:
        self.objtype.pack(enc)
        enc.opaque(self.objname)
        self.createattrs.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            createtype4.unpack(dec), dec.string_bytes("CREATE4args.objname"), fattr4.unpack(dec)
        )


@dataclass(slots=True)
class CREATE4resok:
    """CREATE4resok, RFC 8881 section 18.4: directory ``cinfo``, ``attrset`` bitmap."""

    cinfo: change_info4
    attrset: list[int]

    def pack(self, enc: Encoder) -> None:
        self.cinfo.pack(enc)
        pack_bitmap4(enc, self.attrset)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(change_info4.unpack(dec), unpack_bitmap4(dec, "CREATE4resok.attrset"))


@dataclass(slots=True)
class CREATE4res:
    """CREATE4res, RFC 8881 section 18.4."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_CREATE
    status: nfsstat4
    resok: CREATE4resok | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4_OK:
            _arm(self.resok, "CREATE4res", "resok").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "CREATE4res")
        if status == nfsstat4.NFS4_OK:
            return cls(status, CREATE4resok.unpack(dec))
        return cls(status)


# -- DELEGPURGE, DELEGRETURN, RFC 8881 sections 18.5 and 18.6 --------------------------
@dataclass(slots=True)
class DELEGPURGE4args:
    """DELEGPURGE4args, RFC 8881 section 18.5."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_DELEGPURGE
    clientid: int

    def pack(self, enc: Encoder) -> None:
        enc.uint64(self.clientid)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.uint64("DELEGPURGE4args.clientid"))


class DELEGPURGE4res(StatusOnly4res):
    """DELEGPURGE4res, RFC 8881 section 18.5."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_DELEGPURGE


@dataclass(slots=True)
class DELEGRETURN4args:
    """DELEGRETURN4args, RFC 8881 section 18.6."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_DELEGRETURN
    deleg_stateid: stateid4

    def pack(self, enc: Encoder) -> None:
        self.deleg_stateid.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(stateid4.unpack(dec))


class DELEGRETURN4res(StatusOnly4res):
    """DELEGRETURN4res, RFC 8881 section 18.6."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_DELEGRETURN


# -- GETATTR, GETFH, RFC 8881 sections 18.7 and 18.8 -----------------------------------
@dataclass(slots=True)
class GETATTR4args:
    """GETATTR4args, RFC 8881 section 18.7: ``attr_request`` bitmap4 words."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_GETATTR
    attr_request: list[int]

    def pack(self, enc: Encoder) -> None:
        pack_bitmap4(enc, self.attr_request)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(unpack_bitmap4(dec, "GETATTR4args.attr_request"))


@dataclass(slots=True)
class GETATTR4resok:
    """GETATTR4resok, RFC 8881 section 18.7."""

    obj_attributes: fattr4

    def pack(self, enc: Encoder) -> None:
        self.obj_attributes.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(fattr4.unpack(dec))


@dataclass(slots=True)
class GETATTR4res:
    """GETATTR4res, RFC 8881 section 18.7."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_GETATTR
    status: nfsstat4
    resok: GETATTR4resok | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4_OK:
            _arm(self.resok, "GETATTR4res", "resok").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "GETATTR4res")
        if status == nfsstat4.NFS4_OK:
            return cls(status, GETATTR4resok.unpack(dec))
        return cls(status)


class GETFH4args(Void4args):
    """GETFH (no arguments), RFC 8881 section 18.8."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_GETFH


@dataclass(slots=True)
class GETFH4resok:
    """GETFH4resok, RFC 8881 section 18.8: the current filehandle ``object``."""

    object: bytes

    def pack(self, enc: Encoder) -> None:
        enc.opaque(self.object)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(_unpack_fh(dec, "GETFH4resok.object"))


@dataclass(slots=True)
class GETFH4res:
    """GETFH4res, RFC 8881 section 18.8."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_GETFH
    status: nfsstat4
    resok: GETFH4resok | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4_OK:
            _arm(self.resok, "GETFH4res", "resok").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "GETFH4res")
        if status == nfsstat4.NFS4_OK:
            return cls(status, GETFH4resok.unpack(dec))
        return cls(status)


# -- LINK, RFC 8881 section 18.9 -------------------------------------------------------
@dataclass(slots=True)
class LINK4args:
    """LINK4args, RFC 8881 section 18.9: saved FH = source, current FH = directory."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_LINK
    newname: bytes

    def pack(self, enc: Encoder) -> None:
        enc.opaque(self.newname)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.string_bytes("LINK4args.newname"))


@dataclass(slots=True)
class LINK4resok:
    """LINK4resok, RFC 8881 section 18.9."""

    cinfo: change_info4

    def pack(self, enc: Encoder) -> None:
        self.cinfo.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(change_info4.unpack(dec))


@dataclass(slots=True)
class LINK4res:
    """LINK4res, RFC 8881 section 18.9."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_LINK
    status: nfsstat4
    resok: LINK4resok | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4_OK:
            _arm(self.resok, "LINK4res", "resok").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "LINK4res")
        if status == nfsstat4.NFS4_OK:
            return cls(status, LINK4resok.unpack(dec))
        return cls(status)


# -- LOCK, LOCKT, LOCKU, RFC 8881 sections 18.10 - 18.12 -------------------------------
@dataclass(slots=True)
class open_to_lock_owner4:
    """open_to_lock_owner4, RFC 8881 section 18.10: first lock by a new lock-owner."""

    open_seqid: int
    open_stateid: stateid4
    lock_seqid: int
    lock_owner: state_owner4

    def pack(self, enc: Encoder) -> None:
        enc.uint32(self.open_seqid)
        self.open_stateid.pack(enc)
        enc.uint32(self.lock_seqid)
        self.lock_owner.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.uint32("open_to_lock_owner4.open_seqid"),
            stateid4.unpack(dec),
            dec.uint32("open_to_lock_owner4.lock_seqid"),
            state_owner4.unpack(dec),
        )


@dataclass(slots=True)
class exist_lock_owner4:
    """exist_lock_owner4, RFC 8881 section 18.10: a lock-owner with a lock stateid."""

    lock_stateid: stateid4
    lock_seqid: int

    def pack(self, enc: Encoder) -> None:
        self.lock_stateid.pack(enc)
        enc.uint32(self.lock_seqid)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(stateid4.unpack(dec), dec.uint32("exist_lock_owner4.lock_seqid"))


@dataclass(slots=True)
class locker4:
    """locker4 union on ``new_lock_owner``, RFC 8881 section 18.10: ``open_owner``
    when true, ``lock_owner`` when false."""

    new_lock_owner: bool
    open_owner: open_to_lock_owner4 | None = None
    lock_owner: exist_lock_owner4 | None = None

    def pack(self, enc: Encoder) -> None:
        enc.boolean(self.new_lock_owner)
        if self.new_lock_owner:
            _arm(self.open_owner, "locker4", "open_owner").pack(enc)
        else:
            _arm(self.lock_owner, "locker4", "lock_owner").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        if dec.boolean("locker4.new_lock_owner"):
            return cls(True, open_owner=open_to_lock_owner4.unpack(dec))
        return cls(False, lock_owner=exist_lock_owner4.unpack(dec))


@dataclass(slots=True)
class LOCK4args:
    """LOCK4args, RFC 8881 section 18.10: ``offset`` and ``length`` in bytes (length
    NFS4_UINT64_MAX = to the end of file)."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_LOCK
    locktype: nfs_lock_type4
    reclaim: bool
    offset: int
    length: int
    locker: locker4

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.locktype)
        enc.boolean(self.reclaim)
        enc.uint64(self.offset)
        enc.uint64(self.length)
        self.locker.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.enum(nfs_lock_type4, "LOCK4args.locktype"),
            dec.boolean("LOCK4args.reclaim"),
            dec.uint64("LOCK4args.offset"),
            dec.uint64("LOCK4args.length"),
            locker4.unpack(dec),
        )


@dataclass(slots=True)
class LOCK4denied:
    """LOCK4denied, RFC 8881 section 18.10: the conflicting lock."""

    offset: int
    length: int
    locktype: nfs_lock_type4
    owner: state_owner4

    def pack(self, enc: Encoder) -> None:
        enc.uint64(self.offset)
        enc.uint64(self.length)
        enc.int32(self.locktype)
        self.owner.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.uint64("LOCK4denied.offset"),
            dec.uint64("LOCK4denied.length"),
            dec.enum(nfs_lock_type4, "LOCK4denied.locktype"),
            state_owner4.unpack(dec),
        )


@dataclass(slots=True)
class LOCK4resok:
    """LOCK4resok, RFC 8881 section 18.10."""

    lock_stateid: stateid4

    def pack(self, enc: Encoder) -> None:
        self.lock_stateid.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(stateid4.unpack(dec))


@dataclass(slots=True)
class LOCK4res:
    """LOCK4res, RFC 8881 section 18.10: ``resok`` on NFS4_OK, ``denied`` on
    NFS4ERR_DENIED."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_LOCK
    status: nfsstat4
    resok: LOCK4resok | None = None
    denied: LOCK4denied | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4_OK:
            _arm(self.resok, "LOCK4res", "resok").pack(enc)
        elif self.status == nfsstat4.NFS4ERR_DENIED:
            _arm(self.denied, "LOCK4res", "denied").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "LOCK4res")
        if status == nfsstat4.NFS4_OK:
            return cls(status, resok=LOCK4resok.unpack(dec))
        if status == nfsstat4.NFS4ERR_DENIED:
            return cls(status, denied=LOCK4denied.unpack(dec))
        return cls(status)


@dataclass(slots=True)
class LOCKT4args:
    """LOCKT4args, RFC 8881 section 18.11."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_LOCKT
    locktype: nfs_lock_type4
    offset: int
    length: int
    owner: state_owner4

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.locktype)
        enc.uint64(self.offset)
        enc.uint64(self.length)
        self.owner.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.enum(nfs_lock_type4, "LOCKT4args.locktype"),
            dec.uint64("LOCKT4args.offset"),
            dec.uint64("LOCKT4args.length"),
            state_owner4.unpack(dec),
        )


@dataclass(slots=True)
class LOCKT4res:
    """LOCKT4res, RFC 8881 section 18.11: ``denied`` on NFS4ERR_DENIED."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_LOCKT
    status: nfsstat4
    denied: LOCK4denied | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4ERR_DENIED:
            _arm(self.denied, "LOCKT4res", "denied").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "LOCKT4res")
        if status == nfsstat4.NFS4ERR_DENIED:
            return cls(status, LOCK4denied.unpack(dec))
        return cls(status)


@dataclass(slots=True)
class LOCKU4args:
    """LOCKU4args, RFC 8881 section 18.12."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_LOCKU
    locktype: nfs_lock_type4
    seqid: int
    lock_stateid: stateid4
    offset: int
    length: int

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.locktype)
        enc.uint32(self.seqid)
        self.lock_stateid.pack(enc)
        enc.uint64(self.offset)
        enc.uint64(self.length)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.enum(nfs_lock_type4, "LOCKU4args.locktype"),
            dec.uint32("LOCKU4args.seqid"),
            stateid4.unpack(dec),
            dec.uint64("LOCKU4args.offset"),
            dec.uint64("LOCKU4args.length"),
        )


@dataclass(slots=True)
class LOCKU4res:
    """LOCKU4res, RFC 8881 section 18.12: ``lock_stateid`` on NFS4_OK."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_LOCKU
    status: nfsstat4
    lock_stateid: stateid4 | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4_OK:
            _arm(self.lock_stateid, "LOCKU4res", "lock_stateid").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "LOCKU4res")
        if status == nfsstat4.NFS4_OK:
            return cls(status, stateid4.unpack(dec))
        return cls(status)


# -- LOOKUP, LOOKUPP, NVERIFY, RFC 8881 sections 18.13 - 18.15 -------------------------
@dataclass(slots=True)
class LOOKUP4args:
    """LOOKUP4args, RFC 8881 section 18.13: one name in the current directory."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_LOOKUP
    objname: bytes

    def pack(self, enc: Encoder) -> None:
        enc.opaque(self.objname)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.string_bytes("LOOKUP4args.objname"))


class LOOKUP4res(StatusOnly4res):
    """LOOKUP4res, RFC 8881 section 18.13."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_LOOKUP


class LOOKUPP4args(Void4args):
    """LOOKUPP (no arguments), RFC 8881 section 18.14."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_LOOKUPP


class LOOKUPP4res(StatusOnly4res):
    """LOOKUPP4res, RFC 8881 section 18.14."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_LOOKUPP


@dataclass(slots=True)
class NVERIFY4args:
    """NVERIFY4args, RFC 8881 section 18.15."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_NVERIFY
    obj_attributes: fattr4

    def pack(self, enc: Encoder) -> None:
        self.obj_attributes.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(fattr4.unpack(dec))


class NVERIFY4res(StatusOnly4res):
    """NVERIFY4res, RFC 8881 section 18.15."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_NVERIFY


# -- OPEN, RFC 8881 section 18.16 ------------------------------------------------------
@dataclass(slots=True)
class creatverfattr:
    """creatverfattr (EXCLUSIVE4_1), RFC 8881 section 18.16: verifier plus attributes."""

    cva_verf: bytes
    cva_attrs: fattr4

    def pack(self, enc: Encoder) -> None:
        enc.fixed_opaque(NFS4_VERIFIER_SIZE, self.cva_verf)
        self.cva_attrs.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(_unpack_verifier(dec, "creatverfattr.cva_verf"), fattr4.unpack(dec))


@dataclass(slots=True)
class createhow4:
    """createhow4 union on ``mode``, RFC 8881 section 18.16: ``createattrs`` for
    UNCHECKED4/GUARDED4, ``createverf`` for EXCLUSIVE4, ``ch_createboth`` for
    EXCLUSIVE4_1."""

    mode: createmode4
    createattrs: fattr4 | None = None
    createverf: bytes | None = None
    ch_createboth: creatverfattr | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.mode)
        if self.mode in (createmode4.UNCHECKED4, createmode4.GUARDED4):
            _arm(self.createattrs, "createhow4", "createattrs").pack(enc)
        elif self.mode == createmode4.EXCLUSIVE4:
            verf = _arm(self.createverf, "createhow4", "createverf")
            enc.fixed_opaque(NFS4_VERIFIER_SIZE, verf)
        elif self.mode == createmode4.EXCLUSIVE4_1:
            _arm(self.ch_createboth, "createhow4", "ch_createboth").pack(enc)
        else:
            raise ValueError(f"createhow4: unknown mode {self.mode}")

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        pos = dec.offset
        mode = dec.enum(createmode4, "createhow4.mode")
        if mode in (createmode4.UNCHECKED4, createmode4.GUARDED4):
            return cls(mode, createattrs=fattr4.unpack(dec))
        if mode == createmode4.EXCLUSIVE4:
            return cls(mode, createverf=_unpack_verifier(dec, "createhow4.createverf"))
        if mode == createmode4.EXCLUSIVE4_1:
            return cls(mode, ch_createboth=creatverfattr.unpack(dec))
        raise _bad_discriminant("createhow4", pos, mode)


@dataclass(slots=True)
class openflag4:
    """openflag4 union on ``opentype``, RFC 8881 section 18.16: ``how`` for OPEN4_CREATE."""

    opentype: opentype4
    how: createhow4 | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.opentype)
        if self.opentype == opentype4.OPEN4_CREATE:
            _arm(self.how, "openflag4", "how").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        opentype = dec.enum(opentype4, "openflag4.opentype")
        if opentype == opentype4.OPEN4_CREATE:
            return cls(opentype, createhow4.unpack(dec))
        return cls(opentype)


@dataclass(slots=True)
class open_claim_delegate_cur4:
    """open_claim_delegate_cur4, RFC 8881 section 18.16 (CLAIM_DELEGATE_CUR)."""

    delegate_stateid: stateid4
    file: bytes

    def pack(self, enc: Encoder) -> None:
        self.delegate_stateid.pack(enc)
        enc.opaque(self.file)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(stateid4.unpack(dec), dec.string_bytes("open_claim_delegate_cur4.file"))


@dataclass(slots=True)
class open_claim4:
    """open_claim4 union on ``claim``, RFC 8881 section 18.16.

    Arms: CLAIM_NULL ``file``; CLAIM_PREVIOUS ``delegate_type``; CLAIM_DELEGATE_CUR
    ``delegate_cur_info``; CLAIM_DELEGATE_PREV ``file_delegate_prev``; CLAIM_FH and
    CLAIM_DELEG_PREV_FH void; CLAIM_DELEG_CUR_FH ``oc_delegate_stateid``.
    """

    claim: open_claim_type4
    file: bytes | None = None
    delegate_type: open_delegation_type4 | None = None
    delegate_cur_info: open_claim_delegate_cur4 | None = None
    file_delegate_prev: bytes | None = None
    oc_delegate_stateid: stateid4 | None = None

    def pack(self, enc: Encoder) -> None:
        claim = self.claim
        enc.int32(claim)
        if claim == open_claim_type4.CLAIM_NULL:
            enc.opaque(_arm(self.file, "open_claim4", "file"))
        elif claim == open_claim_type4.CLAIM_PREVIOUS:
            enc.int32(_arm(self.delegate_type, "open_claim4", "delegate_type"))
        elif claim == open_claim_type4.CLAIM_DELEGATE_CUR:
            _arm(self.delegate_cur_info, "open_claim4", "delegate_cur_info").pack(enc)
        elif claim == open_claim_type4.CLAIM_DELEGATE_PREV:
            enc.opaque(_arm(self.file_delegate_prev, "open_claim4", "file_delegate_prev"))
        elif claim == open_claim_type4.CLAIM_DELEG_CUR_FH:
            _arm(self.oc_delegate_stateid, "open_claim4", "oc_delegate_stateid").pack(enc)
        elif claim not in (open_claim_type4.CLAIM_FH, open_claim_type4.CLAIM_DELEG_PREV_FH):
            raise ValueError(f"open_claim4: unknown claim {claim}")

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        pos = dec.offset
        claim = dec.enum(open_claim_type4, "open_claim4.claim")
        if claim == open_claim_type4.CLAIM_NULL:
            return cls(claim, file=dec.string_bytes("open_claim4.file"))
        if claim == open_claim_type4.CLAIM_PREVIOUS:
            return cls(
                claim, delegate_type=dec.enum(open_delegation_type4, "open_claim4.delegate_type")
            )
        if claim == open_claim_type4.CLAIM_DELEGATE_CUR:
            return cls(claim, delegate_cur_info=open_claim_delegate_cur4.unpack(dec))
        if claim == open_claim_type4.CLAIM_DELEGATE_PREV:
            return cls(claim, file_delegate_prev=dec.string_bytes("open_claim4.file_delegate_prev"))
        if claim == open_claim_type4.CLAIM_DELEG_CUR_FH:
            return cls(claim, oc_delegate_stateid=stateid4.unpack(dec))
        if claim in (open_claim_type4.CLAIM_FH, open_claim_type4.CLAIM_DELEG_PREV_FH):
            return cls(claim)
        raise _bad_discriminant("open_claim4", pos, claim)


@dataclass(slots=True)
class OPEN4args:
    """OPEN4args, RFC 8881 section 18.16: ``share_access`` (OPEN4_SHARE_ACCESS_* with
    WANT bits), ``share_deny`` (OPEN4_SHARE_DENY_*), ``seqid`` ignored in NFSv4.1."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_OPEN
    seqid: int
    share_access: int
    share_deny: int
    owner: state_owner4
    openhow: openflag4
    claim: open_claim4

    def pack(self, enc: Encoder) -> None:
        enc.uint32(self.seqid)
        enc.uint32(self.share_access)
        enc.uint32(self.share_deny)
        self.owner.pack(enc)
        self.openhow.pack(enc)
        self.claim.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.uint32("OPEN4args.seqid"),
            dec.uint32("OPEN4args.share_access"),
            dec.uint32("OPEN4args.share_deny"),
            state_owner4.unpack(dec),
            openflag4.unpack(dec),
            open_claim4.unpack(dec),
        )


@dataclass(slots=True)
class nfs_modified_limit4:
    """nfs_modified_limit4, RFC 8881 section 18.16: a limit in blocks."""

    num_blocks: int
    bytes_per_block: int

    def pack(self, enc: Encoder) -> None:
        enc.uint32(self.num_blocks)
        enc.uint32(self.bytes_per_block)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.uint32("nfs_modified_limit4"), dec.uint32("nfs_modified_limit4"))


@dataclass(slots=True)
class nfs_space_limit4:
    """nfs_space_limit4 union on ``limitby``, RFC 8881 section 18.16: ``filesize``
    (bytes) for NFS_LIMIT_SIZE, ``mod_blocks`` for NFS_LIMIT_BLOCKS."""

    limitby: limit_by4
    filesize: int | None = None
    mod_blocks: nfs_modified_limit4 | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.limitby)
        if self.limitby == limit_by4.NFS_LIMIT_SIZE:
            enc.uint64(_arm(self.filesize, "nfs_space_limit4", "filesize"))
        elif self.limitby == limit_by4.NFS_LIMIT_BLOCKS:
            _arm(self.mod_blocks, "nfs_space_limit4", "mod_blocks").pack(enc)
        else:
            raise ValueError(f"nfs_space_limit4: unknown limitby {self.limitby}")

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        pos = dec.offset
        limitby = dec.enum(limit_by4, "nfs_space_limit4.limitby")
        if limitby == limit_by4.NFS_LIMIT_SIZE:
            return cls(limitby, filesize=dec.uint64("nfs_space_limit4.filesize"))
        if limitby == limit_by4.NFS_LIMIT_BLOCKS:
            return cls(limitby, mod_blocks=nfs_modified_limit4.unpack(dec))
        raise _bad_discriminant("nfs_space_limit4", pos, limitby)


@dataclass(slots=True)
class open_read_delegation4:
    """open_read_delegation4, RFC 8881 section 18.16."""

    stateid: stateid4
    recall: bool
    permissions: nfsace4

    def pack(self, enc: Encoder) -> None:
        self.stateid.pack(enc)
        enc.boolean(self.recall)
        self.permissions.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            stateid4.unpack(dec), dec.boolean("open_read_delegation4.recall"), nfsace4.unpack(dec)
        )


@dataclass(slots=True)
class open_write_delegation4:
    """open_write_delegation4, RFC 8881 section 18.16."""

    stateid: stateid4
    recall: bool
    space_limit: nfs_space_limit4
    permissions: nfsace4

    def pack(self, enc: Encoder) -> None:
        self.stateid.pack(enc)
        enc.boolean(self.recall)
        self.space_limit.pack(enc)
        self.permissions.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            stateid4.unpack(dec),
            dec.boolean("open_write_delegation4.recall"),
            nfs_space_limit4.unpack(dec),
            nfsace4.unpack(dec),
        )


@dataclass(slots=True)
class open_none_delegation4:
    """open_none_delegation4 union on ``ond_why``, RFC 8881 section 18.16:
    ``ond_server_will_push_deleg`` for WND4_CONTENTION, ``ond_server_will_signal_avail``
    for WND4_RESOURCE, void otherwise."""

    ond_why: why_no_delegation4
    ond_server_will_push_deleg: bool | None = None
    ond_server_will_signal_avail: bool | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.ond_why)
        if self.ond_why == why_no_delegation4.WND4_CONTENTION:
            arm = "ond_server_will_push_deleg"
            enc.boolean(_arm(self.ond_server_will_push_deleg, "open_none_delegation4", arm))
        elif self.ond_why == why_no_delegation4.WND4_RESOURCE:
            arm = "ond_server_will_signal_avail"
            enc.boolean(_arm(self.ond_server_will_signal_avail, "open_none_delegation4", arm))

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        why = dec.enum(why_no_delegation4, "open_none_delegation4.ond_why")
        if why == why_no_delegation4.WND4_CONTENTION:
            return cls(why, ond_server_will_push_deleg=dec.boolean("open_none_delegation4"))
        if why == why_no_delegation4.WND4_RESOURCE:
            return cls(why, ond_server_will_signal_avail=dec.boolean("open_none_delegation4"))
        return cls(why)


@dataclass(slots=True)
class open_delegation4:
    """open_delegation4 union on ``delegation_type``, RFC 8881 section 18.16: void for
    OPEN_DELEGATE_NONE, ``read``, ``write``, ``od_whynone`` for OPEN_DELEGATE_NONE_EXT."""

    delegation_type: open_delegation_type4
    read: open_read_delegation4 | None = None
    write: open_write_delegation4 | None = None
    od_whynone: open_none_delegation4 | None = None

    def pack(self, enc: Encoder) -> None:
        kind = self.delegation_type
        enc.int32(kind)
        if kind == open_delegation_type4.OPEN_DELEGATE_NONE:
            return
        if kind == open_delegation_type4.OPEN_DELEGATE_READ:
            _arm(self.read, "open_delegation4", "read").pack(enc)
        elif kind == open_delegation_type4.OPEN_DELEGATE_WRITE:
            _arm(self.write, "open_delegation4", "write").pack(enc)
        elif kind == open_delegation_type4.OPEN_DELEGATE_NONE_EXT:
            _arm(self.od_whynone, "open_delegation4", "od_whynone").pack(enc)
        else:
            raise ValueError(f"open_delegation4: unknown delegation_type {kind}")

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        pos = dec.offset
        kind = dec.enum(open_delegation_type4, "open_delegation4.delegation_type")
        if kind == open_delegation_type4.OPEN_DELEGATE_NONE:
            return cls(kind)
        if kind == open_delegation_type4.OPEN_DELEGATE_READ:
            return cls(kind, read=open_read_delegation4.unpack(dec))
        if kind == open_delegation_type4.OPEN_DELEGATE_WRITE:
            return cls(kind, write=open_write_delegation4.unpack(dec))
        if kind == open_delegation_type4.OPEN_DELEGATE_NONE_EXT:
            return cls(kind, od_whynone=open_none_delegation4.unpack(dec))
        raise _bad_discriminant("open_delegation4", pos, kind)


@dataclass(slots=True)
class OPEN4resok:
    """OPEN4resok, RFC 8881 section 18.16: ``rflags`` are OPEN4_RESULT_* bits,
    ``attrset`` the attributes set on create (bitmap4)."""

    stateid: stateid4
    cinfo: change_info4
    rflags: int
    attrset: list[int]
    delegation: open_delegation4

    def pack(self, enc: Encoder) -> None:
        self.stateid.pack(enc)
        self.cinfo.pack(enc)
        enc.uint32(self.rflags)
        pack_bitmap4(enc, self.attrset)
        self.delegation.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            stateid4.unpack(dec),
            change_info4.unpack(dec),
            dec.uint32("OPEN4resok.rflags"),
            unpack_bitmap4(dec, "OPEN4resok.attrset"),
            open_delegation4.unpack(dec),
        )


@dataclass(slots=True)
class OPEN4res:
    """OPEN4res, RFC 8881 section 18.16."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_OPEN
    status: nfsstat4
    resok: OPEN4resok | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4_OK:
            _arm(self.resok, "OPEN4res", "resok").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "OPEN4res")
        if status == nfsstat4.NFS4_OK:
            return cls(status, OPEN4resok.unpack(dec))
        return cls(status)


# -- OPENATTR, OPEN_DOWNGRADE, RFC 8881 sections 18.17 and 18.18 -----------------------
@dataclass(slots=True)
class OPENATTR4args:
    """OPENATTR4args, RFC 8881 section 18.17."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_OPENATTR
    createdir: bool

    def pack(self, enc: Encoder) -> None:
        enc.boolean(self.createdir)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.boolean("OPENATTR4args.createdir"))


class OPENATTR4res(StatusOnly4res):
    """OPENATTR4res, RFC 8881 section 18.17."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_OPENATTR


@dataclass(slots=True)
class OPEN_DOWNGRADE4args:
    """OPEN_DOWNGRADE4args, RFC 8881 section 18.18."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_OPEN_DOWNGRADE
    open_stateid: stateid4
    seqid: int
    share_access: int
    share_deny: int

    def pack(self, enc: Encoder) -> None:
        self.open_stateid.pack(enc)
        enc.uint32(self.seqid)
        enc.uint32(self.share_access)
        enc.uint32(self.share_deny)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            stateid4.unpack(dec),
            dec.uint32("OPEN_DOWNGRADE4args.seqid"),
            dec.uint32("OPEN_DOWNGRADE4args.share_access"),
            dec.uint32("OPEN_DOWNGRADE4args.share_deny"),
        )


@dataclass(slots=True)
class OPEN_DOWNGRADE4resok:
    """OPEN_DOWNGRADE4resok, RFC 8881 section 18.18."""

    open_stateid: stateid4

    def pack(self, enc: Encoder) -> None:
        self.open_stateid.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(stateid4.unpack(dec))


@dataclass(slots=True)
class OPEN_DOWNGRADE4res:
    """OPEN_DOWNGRADE4res, RFC 8881 section 18.18."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_OPEN_DOWNGRADE
    status: nfsstat4
    resok: OPEN_DOWNGRADE4resok | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4_OK:
            _arm(self.resok, "OPEN_DOWNGRADE4res", "resok").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "OPEN_DOWNGRADE4res")
        if status == nfsstat4.NFS4_OK:
            return cls(status, OPEN_DOWNGRADE4resok.unpack(dec))
        return cls(status)


# -- PUTFH, PUTPUBFH, PUTROOTFH, RFC 8881 sections 18.19 - 18.21 -----------------------
@dataclass(slots=True)
class PUTFH4args:
    """PUTFH4args, RFC 8881 section 18.19: ``object`` is the filehandle (<= 128 bytes)."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_PUTFH
    object: bytes

    def pack(self, enc: Encoder) -> None:
        enc.opaque(self.object)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(_unpack_fh(dec, "PUTFH4args.object"))


class PUTFH4res(StatusOnly4res):
    """PUTFH4res, RFC 8881 section 18.19."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_PUTFH


class PUTPUBFH4args(Void4args):
    """PUTPUBFH (no arguments), RFC 8881 section 18.20."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_PUTPUBFH


class PUTPUBFH4res(StatusOnly4res):
    """PUTPUBFH4res, RFC 8881 section 18.20."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_PUTPUBFH


class PUTROOTFH4args(Void4args):
    """PUTROOTFH (no arguments), RFC 8881 section 18.21."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_PUTROOTFH


class PUTROOTFH4res(StatusOnly4res):
    """PUTROOTFH4res, RFC 8881 section 18.21."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_PUTROOTFH


# -- READ, RFC 8881 section 18.22 ------------------------------------------------------
@dataclass(slots=True)
class READ4args:
    """READ4args, RFC 8881 section 18.22: ``offset`` and ``count`` in bytes."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_READ
    stateid: stateid4
    offset: int
    count: int

    def pack(self, enc: Encoder) -> None:
        self.stateid.pack(enc)
        enc.uint64(self.offset)
        enc.uint32(self.count)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            stateid4.unpack(dec), dec.uint64("READ4args.offset"), dec.uint32("READ4args.count")
        )


@dataclass(slots=True)
class READ4resok:
    """READ4resok, RFC 8881 section 18.22: ``eof`` and the ``data`` read.

    Decoding does not copy the payload: ``data`` is a view of the reply buffer (which
    it keeps alive); encoding writes it into the output buffer without an
    intermediate copy.
    """

    eof: bool
    data: bytes | memoryview

    def pack(self, enc: Encoder) -> None:
        enc.boolean(self.eof)
        enc.opaque_bulk(self.data)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        eof = dec.boolean("READ4resok.eof")
        return cls(eof, dec.opaque_view("READ4resok.data"))


@dataclass(slots=True)
class READ4res:
    """READ4res, RFC 8881 section 18.22."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_READ
    status: nfsstat4
    resok: READ4resok | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4_OK:
            _arm(self.resok, "READ4res", "resok").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "READ4res")
        if status == nfsstat4.NFS4_OK:
            return cls(status, READ4resok.unpack(dec))
        return cls(status)


# -- READDIR, RFC 8881 section 18.23 ---------------------------------------------------
@dataclass(slots=True)
class READDIR4args:
    """READDIR4args, RFC 8881 section 18.23: ``cookie`` (0 to start), ``cookieverf``
    (8 bytes), ``dircount`` and ``maxcount`` in bytes, ``attr_request`` bitmap4."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_READDIR
    cookie: int
    cookieverf: bytes
    dircount: int
    maxcount: int
    attr_request: list[int]

    def pack(self, enc: Encoder) -> None:
        enc.uint64(self.cookie)
        enc.fixed_opaque(NFS4_VERIFIER_SIZE, self.cookieverf)
        enc.uint32(self.dircount)
        enc.uint32(self.maxcount)
        pack_bitmap4(enc, self.attr_request)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.uint64("READDIR4args.cookie"),
            _unpack_verifier(dec, "READDIR4args.cookieverf"),
            dec.uint32("READDIR4args.dircount"),
            dec.uint32("READDIR4args.maxcount"),
            unpack_bitmap4(dec, "READDIR4args.attr_request"),
        )


@dataclass(slots=True)
class entry4:
    """entry4, RFC 8881 section 18.23: one directory entry.

    ``pack``/``unpack`` handle the entry's own fields only; the ``nextentry`` link of
    the XDR linked list is written and read by ``dirlist4``, iteratively.
    """

    cookie: int
    name: bytes
    attrs: fattr4

    def pack(self, enc: Encoder) -> None:
        enc.uint64(self.cookie)
        enc.opaque(self.name)
        self.attrs.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.uint64("entry4.cookie"), dec.string_bytes("entry4.name"), fattr4.unpack(dec))


@dataclass(slots=True)
class dirlist4:
    """dirlist4, RFC 8881 section 18.23: ``entries`` (the ``entry4 *`` list, flattened)
    and ``eof``."""

    entries: list[entry4]
    eof: bool

    def pack(self, enc: Encoder) -> None:
        for entry in self.entries:
            enc.boolean(True)
            entry.pack(enc)
        enc.boolean(False)
        enc.boolean(self.eof)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        entries: list[entry4] = []
        while dec.boolean("entry4*"):
            entries.append(entry4.unpack(dec))
        return cls(entries, dec.boolean("dirlist4.eof"))


@dataclass(slots=True)
class READDIR4resok:
    """READDIR4resok, RFC 8881 section 18.23."""

    cookieverf: bytes
    reply: dirlist4

    def pack(self, enc: Encoder) -> None:
        enc.fixed_opaque(NFS4_VERIFIER_SIZE, self.cookieverf)
        self.reply.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(_unpack_verifier(dec, "READDIR4resok.cookieverf"), dirlist4.unpack(dec))


@dataclass(slots=True)
class READDIR4res:
    """READDIR4res, RFC 8881 section 18.23."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_READDIR
    status: nfsstat4
    resok: READDIR4resok | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4_OK:
            _arm(self.resok, "READDIR4res", "resok").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "READDIR4res")
        if status == nfsstat4.NFS4_OK:
            return cls(status, READDIR4resok.unpack(dec))
        return cls(status)


# -- READLINK, REMOVE, RENAME, RESTOREFH, SAVEFH, RFC 8881 sections 18.24 - 18.28 ------
class READLINK4args(Void4args):
    """READLINK (no arguments), RFC 8881 section 18.24."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_READLINK


@dataclass(slots=True)
class READLINK4resok:
    """READLINK4resok, RFC 8881 section 18.24: the symlink target as bytes."""

    link: bytes

    def pack(self, enc: Encoder) -> None:
        enc.opaque(self.link)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.opaque("READLINK4resok.link"))


@dataclass(slots=True)
class READLINK4res:
    """READLINK4res, RFC 8881 section 18.24."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_READLINK
    status: nfsstat4
    resok: READLINK4resok | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4_OK:
            _arm(self.resok, "READLINK4res", "resok").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "READLINK4res")
        if status == nfsstat4.NFS4_OK:
            return cls(status, READLINK4resok.unpack(dec))
        return cls(status)


@dataclass(slots=True)
class REMOVE4args:
    """REMOVE4args, RFC 8881 section 18.25."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_REMOVE
    target: bytes

    def pack(self, enc: Encoder) -> None:
        enc.opaque(self.target)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.string_bytes("REMOVE4args.target"))


@dataclass(slots=True)
class REMOVE4resok:
    """REMOVE4resok, RFC 8881 section 18.25."""

    cinfo: change_info4

    def pack(self, enc: Encoder) -> None:
        self.cinfo.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(change_info4.unpack(dec))


@dataclass(slots=True)
class REMOVE4res:
    """REMOVE4res, RFC 8881 section 18.25."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_REMOVE
    status: nfsstat4
    resok: REMOVE4resok | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4_OK:
            _arm(self.resok, "REMOVE4res", "resok").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "REMOVE4res")
        if status == nfsstat4.NFS4_OK:
            return cls(status, REMOVE4resok.unpack(dec))
        return cls(status)


@dataclass(slots=True)
class RENAME4args:
    """RENAME4args, RFC 8881 section 18.26: saved FH = source dir, current FH = target."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_RENAME
    oldname: bytes
    newname: bytes

    def pack(self, enc: Encoder) -> None:
        enc.opaque(self.oldname)
        enc.opaque(self.newname)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.string_bytes("RENAME4args.oldname"), dec.string_bytes("RENAME4args.newname"))


@dataclass(slots=True)
class RENAME4resok:
    """RENAME4resok, RFC 8881 section 18.26."""

    source_cinfo: change_info4
    target_cinfo: change_info4

    def pack(self, enc: Encoder) -> None:
        self.source_cinfo.pack(enc)
        self.target_cinfo.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(change_info4.unpack(dec), change_info4.unpack(dec))


@dataclass(slots=True)
class RENAME4res:
    """RENAME4res, RFC 8881 section 18.26."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_RENAME
    status: nfsstat4
    resok: RENAME4resok | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4_OK:
            _arm(self.resok, "RENAME4res", "resok").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "RENAME4res")
        if status == nfsstat4.NFS4_OK:
            return cls(status, RENAME4resok.unpack(dec))
        return cls(status)


class RESTOREFH4args(Void4args):
    """RESTOREFH (no arguments), RFC 8881 section 18.27."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_RESTOREFH


class RESTOREFH4res(StatusOnly4res):
    """RESTOREFH4res, RFC 8881 section 18.27."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_RESTOREFH


class SAVEFH4args(Void4args):
    """SAVEFH (no arguments), RFC 8881 section 18.28."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_SAVEFH


class SAVEFH4res(StatusOnly4res):
    """SAVEFH4res, RFC 8881 section 18.28."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_SAVEFH


# -- SECINFO, SETATTR, VERIFY, WRITE, RFC 8881 sections 18.29 - 18.32 ------------------
@dataclass(slots=True)
class SECINFO4args:
    """SECINFO4args, RFC 8881 section 18.29."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_SECINFO
    name: bytes

    def pack(self, enc: Encoder) -> None:
        enc.opaque(self.name)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.string_bytes("SECINFO4args.name"))


def _pack_secinfo_res(enc: Encoder, status: int, resok: list[secinfo4] | None, what: str) -> None:
    enc.int32(status)
    if status == nfsstat4.NFS4_OK:
        enc.struct_array(_arm(resok, what, "resok"))


def _unpack_secinfo_resok(dec: Decoder) -> list[secinfo4]:
    return dec.struct_array(secinfo4)


@dataclass(slots=True)
class SECINFO4res:
    """SECINFO4res, RFC 8881 section 18.29: ``resok`` is SECINFO4resok, a list of
    secinfo4 in the server's order of preference."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_SECINFO
    status: nfsstat4
    resok: list[secinfo4] | None = None

    def pack(self, enc: Encoder) -> None:
        _pack_secinfo_res(enc, self.status, self.resok, "SECINFO4res")

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "SECINFO4res")
        if status == nfsstat4.NFS4_OK:
            return cls(status, _unpack_secinfo_resok(dec))
        return cls(status)


@dataclass(slots=True)
class SETATTR4args:
    """SETATTR4args, RFC 8881 section 18.30: ``stateid`` matters when size changes."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_SETATTR
    stateid: stateid4
    obj_attributes: fattr4

    def pack(self, enc: Encoder) -> None:
        self.stateid.pack(enc)
        self.obj_attributes.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(stateid4.unpack(dec), fattr4.unpack(dec))


@dataclass(slots=True)
class SETATTR4res:
    """SETATTR4res, RFC 8881 section 18.30: a struct; ``attrsset`` is always present."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_SETATTR
    status: nfsstat4
    attrsset: list[int]

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        pack_bitmap4(enc, self.attrsset)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(_status(dec, "SETATTR4res"), unpack_bitmap4(dec, "SETATTR4res.attrsset"))


@dataclass(slots=True)
class VERIFY4args:
    """VERIFY4args, RFC 8881 section 18.31."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_VERIFY
    obj_attributes: fattr4

    def pack(self, enc: Encoder) -> None:
        self.obj_attributes.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(fattr4.unpack(dec))


class VERIFY4res(StatusOnly4res):
    """VERIFY4res, RFC 8881 section 18.31."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_VERIFY


@dataclass(slots=True)
class WRITE4args:
    """WRITE4args, RFC 8881 section 18.32: ``offset`` in bytes, ``data`` the payload.

    Packing writes ``data`` into the output buffer without an intermediate copy (the
    encoder accepts any bytes-like object there, a memoryview slice too).
    """

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_WRITE
    stateid: stateid4
    offset: int
    stable: stable_how4
    data: bytes | memoryview

    def pack(self, enc: Encoder) -> None:
        self.stateid.pack(enc)
        enc.uint64(self.offset)
        enc.int32(self.stable)
        enc.opaque_bulk(self.data)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            stateid4.unpack(dec),
            dec.uint64("WRITE4args.offset"),
            dec.enum(stable_how4, "WRITE4args.stable"),
            dec.opaque("WRITE4args.data"),
        )


@dataclass(slots=True)
class WRITE4resok:
    """WRITE4resok, RFC 8881 section 18.32: ``count`` bytes written, ``committed``
    stability achieved, ``writeverf`` (8 bytes)."""

    count: int
    committed: stable_how4
    writeverf: bytes

    def pack(self, enc: Encoder) -> None:
        enc.uint32(self.count)
        enc.int32(self.committed)
        enc.fixed_opaque(NFS4_VERIFIER_SIZE, self.writeverf)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.uint32("WRITE4resok.count"),
            dec.enum(stable_how4, "WRITE4resok.committed"),
            _unpack_verifier(dec, "WRITE4resok.writeverf"),
        )


@dataclass(slots=True)
class WRITE4res:
    """WRITE4res, RFC 8881 section 18.32."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_WRITE
    status: nfsstat4
    resok: WRITE4resok | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4_OK:
            _arm(self.resok, "WRITE4res", "resok").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "WRITE4res")
        if status == nfsstat4.NFS4_OK:
            return cls(status, WRITE4resok.unpack(dec))
        return cls(status)


# -- RELEASE_LOCKOWNER (NFSv4.0; mandatory not to implement in v4.1) -------------------
@dataclass(slots=True)
class RELEASE_LOCKOWNER4args:
    """RELEASE_LOCKOWNER4args, RFC 7530 section 16.37 (MNI in NFSv4.1, RFC 8881
    section 17; a v4.1 server answers NFS4ERR_NOTSUPP)."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_RELEASE_LOCKOWNER
    lock_owner: state_owner4

    def pack(self, enc: Encoder) -> None:
        self.lock_owner.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(state_owner4.unpack(dec))


class RELEASE_LOCKOWNER4res(StatusOnly4res):
    """RELEASE_LOCKOWNER4res, RFC 7530 section 16.37."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_RELEASE_LOCKOWNER


# -- BACKCHANNEL_CTL, BIND_CONN_TO_SESSION, RFC 8881 sections 18.33 and 18.34 ----------
@dataclass(slots=True)
class BACKCHANNEL_CTL4args:
    """BACKCHANNEL_CTL4args, RFC 8881 section 18.33."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_BACKCHANNEL_CTL
    bca_cb_program: int
    bca_sec_parms: list[callback_sec_parms4]

    def pack(self, enc: Encoder) -> None:
        enc.uint32(self.bca_cb_program)
        enc.struct_array(self.bca_sec_parms)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.uint32("BACKCHANNEL_CTL4args.bca_cb_program"),
            dec.struct_array(callback_sec_parms4),
        )


class BACKCHANNEL_CTL4res(StatusOnly4res):
    """BACKCHANNEL_CTL4res (RFC: bcr_status), RFC 8881 section 18.33."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_BACKCHANNEL_CTL


@dataclass(slots=True)
class BIND_CONN_TO_SESSION4args:
    """BIND_CONN_TO_SESSION4args, RFC 8881 section 18.34."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_BIND_CONN_TO_SESSION
    bctsa_sessid: bytes
    bctsa_dir: channel_dir_from_client4
    bctsa_use_conn_in_rdma_mode: bool

    def pack(self, enc: Encoder) -> None:
        enc.fixed_opaque(NFS4_SESSIONID_SIZE, self.bctsa_sessid)
        enc.int32(self.bctsa_dir)
        enc.boolean(self.bctsa_use_conn_in_rdma_mode)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            _unpack_sessionid(dec, "BIND_CONN_TO_SESSION4args.bctsa_sessid"),
            dec.enum(channel_dir_from_client4, "BIND_CONN_TO_SESSION4args.bctsa_dir"),
            dec.boolean("BIND_CONN_TO_SESSION4args.bctsa_use_conn_in_rdma_mode"),
        )


@dataclass(slots=True)
class BIND_CONN_TO_SESSION4resok:
    """BIND_CONN_TO_SESSION4resok, RFC 8881 section 18.34."""

    bctsr_sessid: bytes
    bctsr_dir: channel_dir_from_server4
    bctsr_use_conn_in_rdma_mode: bool

    def pack(self, enc: Encoder) -> None:
        enc.fixed_opaque(NFS4_SESSIONID_SIZE, self.bctsr_sessid)
        enc.int32(self.bctsr_dir)
        enc.boolean(self.bctsr_use_conn_in_rdma_mode)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            _unpack_sessionid(dec, "BIND_CONN_TO_SESSION4resok.bctsr_sessid"),
            dec.enum(channel_dir_from_server4, "BIND_CONN_TO_SESSION4resok.bctsr_dir"),
            dec.boolean("BIND_CONN_TO_SESSION4resok.bctsr_use_conn_in_rdma_mode"),
        )


@dataclass(slots=True)
class BIND_CONN_TO_SESSION4res:
    """BIND_CONN_TO_SESSION4res (RFC: bctsr_status, bctsr_resok4), RFC 8881 section 18.34."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_BIND_CONN_TO_SESSION
    status: nfsstat4
    resok: BIND_CONN_TO_SESSION4resok | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4_OK:
            _arm(self.resok, "BIND_CONN_TO_SESSION4res", "resok").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "BIND_CONN_TO_SESSION4res")
        if status == nfsstat4.NFS4_OK:
            return cls(status, BIND_CONN_TO_SESSION4resok.unpack(dec))
        return cls(status)


# -- EXCHANGE_ID, RFC 8881 section 18.35 -----------------------------------------------
def _pack_impl_id(enc: Encoder, items: Sequence[nfs_impl_id4], what: str) -> None:
    if len(items) > 1:
        raise ValueError(f"{what} holds at most one nfs_impl_id4")
    enc.struct_array(items)


@dataclass(slots=True)
class EXCHANGE_ID4args:
    """EXCHANGE_ID4args, RFC 8881 section 18.35: ``eia_flags`` are EXCHGID4_FLAG_*;
    ``eia_client_impl_id`` has at most one element."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_EXCHANGE_ID
    eia_clientowner: client_owner4
    eia_flags: int
    eia_state_protect: state_protect4_a
    eia_client_impl_id: list[nfs_impl_id4]

    def pack(self, enc: Encoder) -> None:
        self.eia_clientowner.pack(enc)
        enc.uint32(self.eia_flags)
        self.eia_state_protect.pack(enc)
        _pack_impl_id(enc, self.eia_client_impl_id, "EXCHANGE_ID4args.eia_client_impl_id")

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            client_owner4.unpack(dec),
            dec.uint32("EXCHANGE_ID4args.eia_flags"),
            state_protect4_a.unpack(dec),
            dec.struct_array(nfs_impl_id4, limit=1, min_item=20),
        )


@dataclass(slots=True)
class EXCHANGE_ID4resok:
    """EXCHANGE_ID4resok, RFC 8881 section 18.35."""

    eir_clientid: int
    eir_sequenceid: int
    eir_flags: int
    eir_state_protect: state_protect4_r
    eir_server_owner: server_owner4
    eir_server_scope: bytes
    eir_server_impl_id: list[nfs_impl_id4]

    def pack(self, enc: Encoder) -> None:
        enc.uint64(self.eir_clientid)
        enc.uint32(self.eir_sequenceid)
        enc.uint32(self.eir_flags)
        self.eir_state_protect.pack(enc)
        self.eir_server_owner.pack(enc)
        enc.opaque(self.eir_server_scope)
        _pack_impl_id(enc, self.eir_server_impl_id, "EXCHANGE_ID4resok.eir_server_impl_id")

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.uint64("EXCHANGE_ID4resok.eir_clientid"),
            dec.uint32("EXCHANGE_ID4resok.eir_sequenceid"),
            dec.uint32("EXCHANGE_ID4resok.eir_flags"),
            state_protect4_r.unpack(dec),
            server_owner4.unpack(dec),
            dec.opaque("EXCHANGE_ID4resok.eir_server_scope", NFS4_OPAQUE_LIMIT),
            dec.struct_array(nfs_impl_id4, limit=1, min_item=20),
        )


@dataclass(slots=True)
class EXCHANGE_ID4res:
    """EXCHANGE_ID4res (RFC: eir_status, eir_resok4), RFC 8881 section 18.35."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_EXCHANGE_ID
    status: nfsstat4
    resok: EXCHANGE_ID4resok | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4_OK:
            _arm(self.resok, "EXCHANGE_ID4res", "resok").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "EXCHANGE_ID4res")
        if status == nfsstat4.NFS4_OK:
            return cls(status, EXCHANGE_ID4resok.unpack(dec))
        return cls(status)


# -- CREATE_SESSION, DESTROY_SESSION, FREE_STATEID, RFC 8881 sections 18.36 - 18.38 ----
@dataclass(slots=True)
class CREATE_SESSION4args:
    """CREATE_SESSION4args, RFC 8881 section 18.36: ``csa_sequence`` is the
    eir_sequenceid from EXCHANGE_ID; ``csa_flags`` are CREATE_SESSION4_FLAG_*."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_CREATE_SESSION
    csa_clientid: int
    csa_sequence: int
    csa_flags: int
    csa_fore_chan_attrs: channel_attrs4
    csa_back_chan_attrs: channel_attrs4
    csa_cb_program: int
    csa_sec_parms: list[callback_sec_parms4]

    def pack(self, enc: Encoder) -> None:
        enc.uint64(self.csa_clientid)
        enc.uint32(self.csa_sequence)
        enc.uint32(self.csa_flags)
        self.csa_fore_chan_attrs.pack(enc)
        self.csa_back_chan_attrs.pack(enc)
        enc.uint32(self.csa_cb_program)
        enc.struct_array(self.csa_sec_parms)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.uint64("CREATE_SESSION4args.csa_clientid"),
            dec.uint32("CREATE_SESSION4args.csa_sequence"),
            dec.uint32("CREATE_SESSION4args.csa_flags"),
            channel_attrs4.unpack(dec),
            channel_attrs4.unpack(dec),
            dec.uint32("CREATE_SESSION4args.csa_cb_program"),
            dec.struct_array(callback_sec_parms4),
        )


@dataclass(slots=True)
class CREATE_SESSION4resok:
    """CREATE_SESSION4resok, RFC 8881 section 18.36."""

    csr_sessionid: bytes
    csr_sequence: int
    csr_flags: int
    csr_fore_chan_attrs: channel_attrs4
    csr_back_chan_attrs: channel_attrs4

    def pack(self, enc: Encoder) -> None:
        enc.fixed_opaque(NFS4_SESSIONID_SIZE, self.csr_sessionid)
        enc.uint32(self.csr_sequence)
        enc.uint32(self.csr_flags)
        self.csr_fore_chan_attrs.pack(enc)
        self.csr_back_chan_attrs.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            _unpack_sessionid(dec, "CREATE_SESSION4resok.csr_sessionid"),
            dec.uint32("CREATE_SESSION4resok.csr_sequence"),
            dec.uint32("CREATE_SESSION4resok.csr_flags"),
            channel_attrs4.unpack(dec),
            channel_attrs4.unpack(dec),
        )


@dataclass(slots=True)
class CREATE_SESSION4res:
    """CREATE_SESSION4res (RFC: csr_status, csr_resok4), RFC 8881 section 18.36."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_CREATE_SESSION
    status: nfsstat4
    resok: CREATE_SESSION4resok | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4_OK:
            _arm(self.resok, "CREATE_SESSION4res", "resok").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "CREATE_SESSION4res")
        if status == nfsstat4.NFS4_OK:
            return cls(status, CREATE_SESSION4resok.unpack(dec))
        return cls(status)


@dataclass(slots=True)
class DESTROY_SESSION4args:
    """DESTROY_SESSION4args, RFC 8881 section 18.37."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_DESTROY_SESSION
    dsa_sessionid: bytes

    def pack(self, enc: Encoder) -> None:
        enc.fixed_opaque(NFS4_SESSIONID_SIZE, self.dsa_sessionid)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(_unpack_sessionid(dec, "DESTROY_SESSION4args.dsa_sessionid"))


class DESTROY_SESSION4res(StatusOnly4res):
    """DESTROY_SESSION4res (RFC: dsr_status), RFC 8881 section 18.37."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_DESTROY_SESSION


@dataclass(slots=True)
class FREE_STATEID4args:
    """FREE_STATEID4args, RFC 8881 section 18.38."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_FREE_STATEID
    fsa_stateid: stateid4

    def pack(self, enc: Encoder) -> None:
        self.fsa_stateid.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(stateid4.unpack(dec))


class FREE_STATEID4res(StatusOnly4res):
    """FREE_STATEID4res (RFC: fsr_status), RFC 8881 section 18.38."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_FREE_STATEID


# -- SECINFO_NO_NAME, SEQUENCE, RFC 8881 sections 18.45 and 18.46 ----------------------
@dataclass(slots=True)
class SECINFO_NO_NAME4args:
    """SECINFO_NO_NAME4args (RFC: a typedef of secinfo_style4), RFC 8881 section 18.45."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_SECINFO_NO_NAME
    style: secinfo_style4

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.style)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.enum(secinfo_style4, "SECINFO_NO_NAME4args"))


@dataclass(slots=True)
class SECINFO_NO_NAME4res:
    """SECINFO_NO_NAME4res (RFC: a typedef of SECINFO4res), RFC 8881 section 18.45."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_SECINFO_NO_NAME
    status: nfsstat4
    resok: list[secinfo4] | None = None

    def pack(self, enc: Encoder) -> None:
        _pack_secinfo_res(enc, self.status, self.resok, "SECINFO_NO_NAME4res")

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "SECINFO_NO_NAME4res")
        if status == nfsstat4.NFS4_OK:
            return cls(status, _unpack_secinfo_resok(dec))
        return cls(status)


@dataclass(slots=True)
class SEQUENCE4args:
    """SEQUENCE4args, RFC 8881 section 18.46: ``sa_sessionid`` (16 bytes),
    ``sa_sequenceid`` (uint32, wraps modulo 2**32), ``sa_slotid`` and
    ``sa_highest_slotid`` (slot indexes, not counts), ``sa_cachethis``."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_SEQUENCE
    sa_sessionid: bytes
    sa_sequenceid: int
    sa_slotid: int
    sa_highest_slotid: int
    sa_cachethis: bool

    def pack(self, enc: Encoder) -> None:
        enc.fixed_opaque(NFS4_SESSIONID_SIZE, self.sa_sessionid)
        enc.uint32(self.sa_sequenceid)
        enc.uint32(self.sa_slotid)
        enc.uint32(self.sa_highest_slotid)
        enc.boolean(self.sa_cachethis)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            _unpack_sessionid(dec, "SEQUENCE4args.sa_sessionid"),
            dec.uint32("SEQUENCE4args.sa_sequenceid"),
            dec.uint32("SEQUENCE4args.sa_slotid"),
            dec.uint32("SEQUENCE4args.sa_highest_slotid"),
            dec.boolean("SEQUENCE4args.sa_cachethis"),
        )


@dataclass(slots=True)
class SEQUENCE4resok:
    """SEQUENCE4resok, RFC 8881 section 18.46: ``sr_status_flags`` are SEQ4_STATUS_*."""

    sr_sessionid: bytes
    sr_sequenceid: int
    sr_slotid: int
    sr_highest_slotid: int
    sr_target_highest_slotid: int
    sr_status_flags: int

    def pack(self, enc: Encoder) -> None:
        enc.fixed_opaque(NFS4_SESSIONID_SIZE, self.sr_sessionid)
        enc.uint32(self.sr_sequenceid)
        enc.uint32(self.sr_slotid)
        enc.uint32(self.sr_highest_slotid)
        enc.uint32(self.sr_target_highest_slotid)
        enc.uint32(self.sr_status_flags)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            _unpack_sessionid(dec, "SEQUENCE4resok.sr_sessionid"),
            dec.uint32("SEQUENCE4resok.sr_sequenceid"),
            dec.uint32("SEQUENCE4resok.sr_slotid"),
            dec.uint32("SEQUENCE4resok.sr_highest_slotid"),
            dec.uint32("SEQUENCE4resok.sr_target_highest_slotid"),
            dec.uint32("SEQUENCE4resok.sr_status_flags"),
        )


@dataclass(slots=True)
class SEQUENCE4res:
    """SEQUENCE4res (RFC: sr_status, sr_resok4), RFC 8881 section 18.46."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_SEQUENCE
    status: nfsstat4
    resok: SEQUENCE4resok | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4_OK:
            _arm(self.resok, "SEQUENCE4res", "resok").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "SEQUENCE4res")
        if status == nfsstat4.NFS4_OK:
            return cls(status, SEQUENCE4resok.unpack(dec))
        return cls(status)


# -- TEST_STATEID, DESTROY_CLIENTID, RECLAIM_COMPLETE, RFC 8881 18.48, 18.50, 18.51 ----
@dataclass(slots=True)
class TEST_STATEID4args:
    """TEST_STATEID4args, RFC 8881 section 18.48."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_TEST_STATEID
    ts_stateids: list[stateid4]

    def pack(self, enc: Encoder) -> None:
        enc.struct_array(self.ts_stateids)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.struct_array(stateid4, min_item=16))


@dataclass(slots=True)
class TEST_STATEID4resok:
    """TEST_STATEID4resok, RFC 8881 section 18.48: one status per stateid tested."""

    tsr_status_codes: list[nfsstat4]

    def pack(self, enc: Encoder) -> None:
        enc.uint32(len(self.tsr_status_codes))
        for code in self.tsr_status_codes:
            enc.int32(code)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        what = "TEST_STATEID4resok.tsr_status_codes"
        return cls(dec.array(lambda: dec.enum(nfsstat4, what), what))


@dataclass(slots=True)
class TEST_STATEID4res:
    """TEST_STATEID4res (RFC: tsr_status, tsr_resok4), RFC 8881 section 18.48."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_TEST_STATEID
    status: nfsstat4
    resok: TEST_STATEID4resok | None = None

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.status == nfsstat4.NFS4_OK:
            _arm(self.resok, "TEST_STATEID4res", "resok").pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "TEST_STATEID4res")
        if status == nfsstat4.NFS4_OK:
            return cls(status, TEST_STATEID4resok.unpack(dec))
        return cls(status)


@dataclass(slots=True)
class DESTROY_CLIENTID4args:
    """DESTROY_CLIENTID4args, RFC 8881 section 18.50."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_DESTROY_CLIENTID
    dca_clientid: int

    def pack(self, enc: Encoder) -> None:
        enc.uint64(self.dca_clientid)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.uint64("DESTROY_CLIENTID4args.dca_clientid"))


class DESTROY_CLIENTID4res(StatusOnly4res):
    """DESTROY_CLIENTID4res (RFC: dcr_status), RFC 8881 section 18.50."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_DESTROY_CLIENTID


@dataclass(slots=True)
class RECLAIM_COMPLETE4args:
    """RECLAIM_COMPLETE4args, RFC 8881 section 18.51: ``rca_one_fs`` true = only the
    file system of the current filehandle (e.g. after migration)."""

    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_RECLAIM_COMPLETE
    rca_one_fs: bool

    def pack(self, enc: Encoder) -> None:
        enc.boolean(self.rca_one_fs)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(dec.boolean("RECLAIM_COMPLETE4args.rca_one_fs"))


class RECLAIM_COMPLETE4res(StatusOnly4res):
    """RECLAIM_COMPLETE4res (RFC: rcr_status), RFC 8881 section 18.51."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_RECLAIM_COMPLETE


class ILLEGAL4res(StatusOnly4res):
    """ILLEGAL4res, RFC 8881 section 18.52: the result for an unknown operation
    number (status NFS4ERR_OP_ILLEGAL)."""

    __slots__ = ()
    OPNUM: ClassVar[nfs_opnum4] = nfs_opnum4.OP_ILLEGAL


# -- registries and COMPOUND, RFC 8881 section 16.2 ------------------------------------
ArgOp: TypeAlias = (
    ACCESS4args
    | CLOSE4args
    | COMMIT4args
    | CREATE4args
    | DELEGPURGE4args
    | DELEGRETURN4args
    | GETATTR4args
    | GETFH4args
    | LINK4args
    | LOCK4args
    | LOCKT4args
    | LOCKU4args
    | LOOKUP4args
    | LOOKUPP4args
    | NVERIFY4args
    | OPEN4args
    | OPENATTR4args
    | OPEN_DOWNGRADE4args
    | PUTFH4args
    | PUTPUBFH4args
    | PUTROOTFH4args
    | READ4args
    | READDIR4args
    | READLINK4args
    | REMOVE4args
    | RENAME4args
    | RESTOREFH4args
    | SAVEFH4args
    | SECINFO4args
    | SETATTR4args
    | VERIFY4args
    | WRITE4args
    | RELEASE_LOCKOWNER4args
    | BACKCHANNEL_CTL4args
    | BIND_CONN_TO_SESSION4args
    | EXCHANGE_ID4args
    | CREATE_SESSION4args
    | DESTROY_SESSION4args
    | FREE_STATEID4args
    | SECINFO_NO_NAME4args
    | SEQUENCE4args
    | TEST_STATEID4args
    | DESTROY_CLIENTID4args
    | RECLAIM_COMPLETE4args
)
"""Any operation's arguments (the arms of RFC 5662 ``nfs_argop4``)."""

ResOp: TypeAlias = (
    ACCESS4res
    | CLOSE4res
    | COMMIT4res
    | CREATE4res
    | DELEGPURGE4res
    | DELEGRETURN4res
    | GETATTR4res
    | GETFH4res
    | LINK4res
    | LOCK4res
    | LOCKT4res
    | LOCKU4res
    | LOOKUP4res
    | LOOKUPP4res
    | NVERIFY4res
    | OPEN4res
    | OPENATTR4res
    | OPEN_DOWNGRADE4res
    | PUTFH4res
    | PUTPUBFH4res
    | PUTROOTFH4res
    | READ4res
    | READDIR4res
    | READLINK4res
    | REMOVE4res
    | RENAME4res
    | RESTOREFH4res
    | SAVEFH4res
    | SECINFO4res
    | SETATTR4res
    | VERIFY4res
    | WRITE4res
    | RELEASE_LOCKOWNER4res
    | BACKCHANNEL_CTL4res
    | BIND_CONN_TO_SESSION4res
    | EXCHANGE_ID4res
    | CREATE_SESSION4res
    | DESTROY_SESSION4res
    | FREE_STATEID4res
    | SECINFO_NO_NAME4res
    | SEQUENCE4res
    | TEST_STATEID4res
    | DESTROY_CLIENTID4res
    | RECLAIM_COMPLETE4res
    | ILLEGAL4res
)
"""Any operation's result (the arms of RFC 5662 ``nfs_resop4``)."""

_ARG_CLASSES: Final[tuple[type[ArgOp], ...]] = (
    ACCESS4args,
    CLOSE4args,
    COMMIT4args,
    CREATE4args,
    DELEGPURGE4args,
    DELEGRETURN4args,
    GETATTR4args,
    GETFH4args,
    LINK4args,
    LOCK4args,
    LOCKT4args,
    LOCKU4args,
    LOOKUP4args,
    LOOKUPP4args,
    NVERIFY4args,
    OPEN4args,
    OPENATTR4args,
    OPEN_DOWNGRADE4args,
    PUTFH4args,
    PUTPUBFH4args,
    PUTROOTFH4args,
    READ4args,
    READDIR4args,
    READLINK4args,
    REMOVE4args,
    RENAME4args,
    RESTOREFH4args,
    SAVEFH4args,
    SECINFO4args,
    SETATTR4args,
    VERIFY4args,
    WRITE4args,
    RELEASE_LOCKOWNER4args,
    BACKCHANNEL_CTL4args,
    BIND_CONN_TO_SESSION4args,
    EXCHANGE_ID4args,
    CREATE_SESSION4args,
    DESTROY_SESSION4args,
    FREE_STATEID4args,
    SECINFO_NO_NAME4args,
    SEQUENCE4args,
    TEST_STATEID4args,
    DESTROY_CLIENTID4args,
    RECLAIM_COMPLETE4args,
)

_RES_CLASSES: Final[tuple[type[ResOp], ...]] = (
    ACCESS4res,
    CLOSE4res,
    COMMIT4res,
    CREATE4res,
    DELEGPURGE4res,
    DELEGRETURN4res,
    GETATTR4res,
    GETFH4res,
    LINK4res,
    LOCK4res,
    LOCKT4res,
    LOCKU4res,
    LOOKUP4res,
    LOOKUPP4res,
    NVERIFY4res,
    OPEN4res,
    OPENATTR4res,
    OPEN_DOWNGRADE4res,
    PUTFH4res,
    PUTPUBFH4res,
    PUTROOTFH4res,
    READ4res,
    READDIR4res,
    READLINK4res,
    REMOVE4res,
    RENAME4res,
    RESTOREFH4res,
    SAVEFH4res,
    SECINFO4res,
    SETATTR4res,
    VERIFY4res,
    WRITE4res,
    RELEASE_LOCKOWNER4res,
    BACKCHANNEL_CTL4res,
    BIND_CONN_TO_SESSION4res,
    EXCHANGE_ID4res,
    CREATE_SESSION4res,
    DESTROY_SESSION4res,
    FREE_STATEID4res,
    SECINFO_NO_NAME4res,
    SEQUENCE4res,
    TEST_STATEID4res,
    DESTROY_CLIENTID4res,
    RECLAIM_COMPLETE4res,
    ILLEGAL4res,
)

ARGS_BY_OPNUM: Final[dict[nfs_opnum4, type[ArgOp]]] = {cls.OPNUM: cls for cls in _ARG_CLASSES}
"""Argument class of each operation this module decodes (no OP_ILLEGAL, no pNFS)."""
RES_BY_OPNUM: Final[dict[nfs_opnum4, type[ResOp]]] = {cls.OPNUM: cls for cls in _RES_CLASSES}
"""Result class of each operation this module decodes, OP_ILLEGAL included."""


def unpack_argop(dec: Decoder) -> ArgOp:
    """One ``nfs_argop4``: the opnum, then that operation's arguments.

    Raises:
        XdrError: naming ``nfs_argop4`` for an operation number with no args class here
            (a server answers with ILLEGAL4res or NFS4ERR_NOTSUPP at that index).
    """
    pos = dec.offset
    opnum = dec.enum(nfs_opnum4, "nfs_argop4.argop")
    cls = ARGS_BY_OPNUM.get(opnum)
    if cls is None:
        raise XdrError("nfs_argop4", pos, f"unknown operation {int(opnum)}")
    return cls.unpack(dec)


def unpack_resop(dec: Decoder) -> ResOp:
    """One ``nfs_resop4``: the opnum, then that operation's result.

    Raises:
        XdrError: naming ``nfs_resop4`` for an operation number with no result class.
    """
    pos = dec.offset
    opnum = dec.enum(nfs_opnum4, "nfs_resop4.resop")
    cls = RES_BY_OPNUM.get(opnum)
    if cls is None:
        raise XdrError("nfs_resop4", pos, f"unknown operation {int(opnum)}")
    return cls.unpack(dec)


@dataclass(slots=True)
class COMPOUND4args:
    """COMPOUND4args, RFC 8881 section 16.2: ``tag`` (opaque to the server, echoed),
    ``minorversion`` (1), ``argarray`` the operations in order."""

    tag: bytes
    minorversion: int
    argarray: list[ArgOp]

    def pack(self, enc: Encoder) -> None:
        enc.opaque(self.tag)
        enc.uint32(self.minorversion)
        enc.uint32(len(self.argarray))
        for op in self.argarray:
            enc.int32(op.OPNUM)
            op.pack(enc)

    @classmethod
    def unpack_head(cls, dec: Decoder) -> tuple[bytes, int, int]:
        """``(tag, minorversion, count)``: for a server that decodes the operations one
        by one with ``unpack_argop`` so it can answer an undecodable one at its index."""
        tag = dec.opaque("COMPOUND4args.tag")
        minorversion = dec.uint32("COMPOUND4args.minorversion")
        pos = dec.offset
        count = dec.uint32("COMPOUND4args.argarray")
        if count > MAX_COMPOUND_OPS or count * 4 > dec.remaining():
            raise XdrError("COMPOUND4args.argarray", pos, f"bad operation count {count}")
        return tag, minorversion, count

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        tag, minorversion, count = cls.unpack_head(dec)
        return cls(tag, minorversion, [unpack_argop(dec) for _ in range(count)])

    def opnames(self) -> str:
        """``"SEQUENCE PUTFH READ"``, for log lines."""
        return " ".join(op.OPNUM.name.removeprefix("OP_") for op in self.argarray)


@dataclass(slots=True)
class COMPOUND4res:
    """COMPOUND4res, RFC 8881 section 16.2: ``status`` is that of the last result;
    ``resarray`` holds the results up to and including the first failure."""

    status: nfsstat4
    tag: bytes
    resarray: list[ResOp]

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        enc.opaque(self.tag)
        enc.uint32(len(self.resarray))
        for res in self.resarray:
            enc.int32(res.OPNUM)
            res.pack(enc)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        status = _status(dec, "COMPOUND4res")
        tag = dec.opaque("COMPOUND4res.tag")
        resarray = dec.array(
            lambda: unpack_resop(dec), "COMPOUND4res.resarray", MAX_COMPOUND_OPS, 8
        )
        return cls(status, tag, resarray)
