"""Recipient address validation and normalization, agreeing with email-validator.

email-validator alone is too slow for a list of 100,000 recipients (bench/costs.py). Almost every
address is a plain ASCII dot-atom local part on a handful of domains, so the fast path checks
the local part with email-validator's own dot-atom pattern and validates each distinct domain once
with email-validator itself. Anything else goes to email-validator whole. Both paths give the same
answer (tests/unit/message/test_addresses.py checks it with hypothesis and with email-validator's test vectors).
"""

from __future__ import annotations

from functools import lru_cache

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES, DOT_ATOM_TEXT, EMAIL_MAX_LENGTH

from email_service.errors import InvalidAddress

# RFC 2142 names (postmaster, abuse...) that email-validator lower-cases in the local part.
_CASE_INSENSITIVE = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)
# An error quotes at most this many characters of a refused address: enough to find it in a long list,
# never a whole megabyte echoed back.
QUOTED_MAX = 100


def quoted(address: str) -> str:
    """``address`` as an error quotes it: its first QUOTED_MAX characters, then "…" if there were more."""
    return address if len(address) <= QUOTED_MAX else address[:QUOTED_MAX] + "…"


def normalize_address(address: str) -> str:
    """The normalized form of ``address`` (domain lower-cased and IDNA-checked), or InvalidAddress."""
    local, at, domain = address.rpartition("@")
    # An ASCII dot-atom has no "@", quote or non-ASCII character: email-validator keeps it as it is.
    if at and DOT_ATOM_TEXT.match(local):
        checked = _check_domain(domain)
        # email-validator limits the address as given, normalized and in IDNA ASCII to 254 octets; with an
        # ASCII local part, the form with the longest domain is the longest.
        if checked is not None and len(local) + 1 + checked[1] <= EMAIL_MAX_LENGTH:
            if local.lower() in _CASE_INSENSITIVE:
                local = local.lower()
            return f"{local}@{checked[0]}"
    return _validate_slowly(address)


def dedup_key(normalized: str) -> str:
    """Key under which two addresses count as the same mailbox (mailbox providers ignore case)."""
    return normalized.lower()


@lru_cache(maxsize=4096)
def _check_domain(domain: str) -> tuple[str, int] | None:
    """The normalized domain and the octets of its longest form (as given, normalized, IDNA ASCII), or
    None when email-validator refuses it."""
    try:
        validated = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return None
    forms = (domain, validated.domain, validated.ascii_domain)
    return validated.domain, max(len(form.encode()) for form in forms)


def _validate_slowly(address: str) -> str:
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from None
