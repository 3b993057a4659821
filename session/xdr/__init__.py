"""XDR (RFC 4506) types and codecs for NFSv4.1 (RFC 5662) and ONC RPC (RFC 5531).

Modules:
    codec:  ``Encoder``/``Decoder`` on xdrlib3 with bounded, typed reads.
    const:  enums and constants (``nfsstat4``, ``nfs_opnum4``, flags), no codecs.
    nfs4:   structs, unions, every operation's args and results, COMPOUND.
    fattr:  the fattr4 attribute bitmap and attribute values.
    cb:     the callback program (CB_COMPOUND, CB_SEQUENCE, CB_RECALL, CB_GETATTR).
"""
