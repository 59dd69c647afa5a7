"""What an SMTP reply means: retry, fail, or fail and suppress the address (a hard bounce)."""

from __future__ import annotations

import pytest

from email_service.delivery.replies import error_from_reply
from email_service.errors import PermanentDeliveryError, RecipientRefused, TemporaryDeliveryError


@pytest.mark.parametrize(
    ("code", "text", "to_rcpt", "kind"),
    [
        (550, "5.1.1 No such user here", True, RecipientRefused),
        (550, "5.1.10 Recipient address has null MX", True, RecipientRefused),
        (551, "5.2.1 Mailbox disabled", True, RecipientRefused),
        (553, "5.1.7 Bad sender's mailbox address syntax", True, PermanentDeliveryError),  # about the sender
        (553, "5.1.8 Bad sender's system address", True, PermanentDeliveryError),
        (553, "5.1.70 odd status", True, RecipientRefused),
        (550, "5.1.1 No such user here", False, PermanentDeliveryError),  # after DATA: not about the address
        (550, "5.7.1 Relaying denied", True, PermanentDeliveryError),  # our account, not the address
        (552, "5.2.2 Mailbox full", True, PermanentDeliveryError),
        (550, "Requested action not taken", True, PermanentDeliveryError),  # no enhanced status: not certain
        (451, "4.1.1 Try later", True, TemporaryDeliveryError),
    ],
)
def test_only_an_unknown_address_at_rcpt_is_a_hard_bounce(code: int, text: str, to_rcpt: bool, kind: type):
    error = error_from_reply(code, text, to_rcpt=to_rcpt)
    assert type(error) is kind
