"""Argument builders for raw COMPOUNDs, every field chosen by the caller.

``fusenfs check`` (``fusenfs.check_wire.Wire``) and the test server's raw test client
(``contrib.testserver.rawclient.RawClient``) send COMPOUNDs by hand: no slot table, no
retries, sequence ids and flags as a check wants them, including wrong ones.  Both keep
one client owner's identity and session in the attributes below, and build their
arguments with this mixin, so that a SEQUENCE4args or an OPEN4args means the same in a
server check and in a server test.
"""

from __future__ import annotations

import os
from typing import ClassVar

from session.xdr import nfs4
from session.xdr.const import (
    EXCHGID4_FLAG_SUPP_MOVED_MIGR,
    EXCHGID4_FLAG_SUPP_MOVED_REFER,
    OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
    OPEN4_SHARE_DENY_NONE,
    createmode4,
    open_claim_type4,
    open_delegation_type4,
    opentype4,
    state_protect_how4,
)
from session.xdr.fattr import NFSAttrs, encode_fattr4

#: EXCHANGE_ID's flags unless told otherwise: migration and referral support (RFC 8881
#: section 18.35).
DEFAULT_EIA_FLAGS = EXCHGID4_FLAG_SUPP_MOVED_REFER | EXCHGID4_FLAG_SUPP_MOVED_MIGR


class RawArgs:
    """Builders of SEQUENCE4args, EXCHANGE_ID4args and OPEN4args for one client owner.

    The class using it provides:
        owner: the co_ownerid (bytes).
        verifier: the co_verifier (8 bytes).
        clientid: from the last EXCHANGE_ID.
        sessionid: the session in use.
        seqids: slot id -> the sequence id last used on it.
        impl_id: the eia_client_impl_id sent (empty by default).
        open_owner: the open-owner of ``open_args`` unless one is given.
    """

    owner: bytes
    verifier: bytes
    clientid: int
    sessionid: bytes
    seqids: dict[int, int]
    impl_id: ClassVar[list[nfs4.nfs_impl_id4]] = []
    open_owner: ClassVar[bytes] = b"open-owner"

    def sequence_args(
        self,
        slot: int = 0,
        seqid: int | None = None,
        cachethis: bool = False,
        sessionid: bytes | None = None,
        highest: int | None = None,
    ) -> nfs4.SEQUENCE4args:
        """SEQUENCE4args (RFC 8881 section 18.46) for ``slot`` (an index); ``seqid``
        defaults to the slot's next one, ``highest`` to ``slot``."""
        if seqid is None:
            seqid = (self.seqids.get(slot, 0) + 1) & 0xFFFFFFFF
        return nfs4.SEQUENCE4args(
            sa_sessionid=sessionid if sessionid is not None else self.sessionid,
            sa_sequenceid=seqid,
            sa_slotid=slot,
            sa_highest_slotid=highest if highest is not None else slot,
            sa_cachethis=cachethis,
        )

    def exchange_id_args(
        self,
        flags: int | None = None,
        verifier: bytes | None = None,
        state_protect: nfs4.state_protect4_a | None = None,
    ) -> nfs4.EXCHANGE_ID4args:
        """EXCHANGE_ID4args (RFC 8881 section 18.35) of this owner: ``flags`` default
        ``DEFAULT_EIA_FLAGS``, ``verifier`` the owner's, ``state_protect`` SP4_NONE."""
        return nfs4.EXCHANGE_ID4args(
            eia_clientowner=nfs4.client_owner4(
                co_verifier=verifier if verifier is not None else self.verifier,
                co_ownerid=self.owner,
            ),
            eia_flags=DEFAULT_EIA_FLAGS if flags is None else flags,
            eia_state_protect=(
                state_protect
                if state_protect is not None
                else nfs4.state_protect4_a(spa_how=state_protect_how4.SP4_NONE)
            ),
            eia_client_impl_id=list(self.impl_id),
        )

    def open_args(
        self,
        name: bytes | None,
        access: int,
        *,
        deny: int = OPEN4_SHARE_DENY_NONE,
        create: bool = False,
        mode: createmode4 = createmode4.UNCHECKED4,
        owner: bytes | None = None,
        want: int = OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
        claim: open_claim_type4 | None = None,
        attrs: NFSAttrs | None = None,
        verifier: bytes = b"",
        delegation: nfs4.stateid4 | None = None,
        delegate_type: open_delegation_type4 = open_delegation_type4.OPEN_DELEGATE_NONE,
    ) -> nfs4.OPEN4args:
        """OPEN4args (RFC 8881 section 18.16): by name (CLAIM_NULL) or, with ``name``
        None, CLAIM_FH; other claims by ``claim`` (CLAIM_PREVIOUS reclaims an open, and
        with ``delegate_type`` a delegation of that type; CLAIM_DELEG_CUR_FH opens under
        the ``delegation`` stateid).  ``create`` with ``mode`` (EXCLUSIVE4_1 with
        ``verifier``, random if empty) and ``attrs``; ``want`` the delegation wish bits
        added to ``access``."""
        if create:
            if mode == createmode4.EXCLUSIVE4_1:
                how = nfs4.createhow4(
                    mode=mode,
                    ch_createboth=nfs4.creatverfattr(
                        verifier or os.urandom(8), encode_fattr4(attrs or NFSAttrs())
                    ),
                )
            else:
                how = nfs4.createhow4(mode=mode, createattrs=encode_fattr4(attrs or NFSAttrs()))
            openhow = nfs4.openflag4(opentype4.OPEN4_CREATE, how)
        else:
            openhow = nfs4.openflag4(opentype4.OPEN4_NOCREATE)
        if claim is None:
            claim = open_claim_type4.CLAIM_NULL if name is not None else open_claim_type4.CLAIM_FH
        if claim == open_claim_type4.CLAIM_NULL:
            oclaim = nfs4.open_claim4(claim, file=name)
        elif claim == open_claim_type4.CLAIM_PREVIOUS:
            oclaim = nfs4.open_claim4(claim, delegate_type=delegate_type)
        elif claim == open_claim_type4.CLAIM_DELEG_CUR_FH:
            oclaim = nfs4.open_claim4(claim, oc_delegate_stateid=delegation)
        else:
            oclaim = nfs4.open_claim4(claim)
        return nfs4.OPEN4args(
            seqid=0,
            share_access=access | want,
            share_deny=deny,
            owner=nfs4.state_owner4(self.clientid, self.open_owner if owner is None else owner),
            openhow=openhow,
            claim=oclaim,
        )
