"""DKIM (RFC 6376): the relaxed canonicalization and the signer that uses it."""
