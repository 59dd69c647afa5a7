"""One colour family per status, the same on every page: a status is shown by its name and its tone."""

from __future__ import annotations

from email_service.storage.models import JobStatus, RecipientStatus

# Tones are CSS classes (static/dashboard.css); each has a text colour of at least 4.5:1 contrast.
STATUS_TONES: dict[str, str] = {
    JobStatus.SCHEDULED: "waiting",
    JobStatus.QUEUED: "waiting",
    RecipientStatus.PENDING: "waiting",
    JobStatus.SENDING: "active",
    JobStatus.PAUSED: "held",
    RecipientStatus.DEFERRED: "held",
    JobStatus.COMPLETED: "done",
    RecipientStatus.SENT: "done",
    RecipientStatus.FAILED: "bad",
    RecipientStatus.BOUNCED: "bad",
    RecipientStatus.COMPLAINED: "bad",
    RecipientStatus.SUPPRESSED: "muted",
    JobStatus.CANCELLED: "muted",
    RecipientStatus.EXPIRED: "muted",
}

# The order counts are shown in: outcomes first, then what is still on its way.
RECIPIENT_STATUS_ORDER: tuple[str, ...] = (
    RecipientStatus.SENT,
    RecipientStatus.FAILED,
    RecipientStatus.BOUNCED,
    RecipientStatus.COMPLAINED,
    RecipientStatus.DEFERRED,
    RecipientStatus.SUPPRESSED,
    RecipientStatus.CANCELLED,
    RecipientStatus.EXPIRED,
    RecipientStatus.SENDING,
    RecipientStatus.PENDING,
)


def tone(status: str) -> str:
    return STATUS_TONES.get(status, "muted")
