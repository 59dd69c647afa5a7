"""Turning a job and one of its recipients into the envelope the relay receives."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from email_service.message import unsubscribe, verp
from email_service.message.mime import AttachmentFile, Envelope, MessageBuilder, date_value, message_id_for
from email_service.message.rendering import TemplateRenderer, TemplateSource

if TYPE_CHECKING:
    from email_service.message.dkim.signing import DkimSigner


@dataclass(frozen=True)
class JobContent:
    """What every recipient of a job shares."""

    job_id: str
    template: TemplateSource
    sender: str
    subject: str
    content: str
    variables: dict[str, Any] | None = None
    # The job's Reply-To and X-* headers, as (name, value) pairs.
    headers: tuple[tuple[str, str], ...] = ()
    attachments: tuple[AttachmentFile, ...] = ()
    # (PUBLIC_URL, the job's key) when its messages carry one-click unsubscribe links.
    unsubscribe: tuple[str, str] | None = None
    # Set when bounces are tracked: each message's own envelope sender (VERP) and reference header.
    bounces: verp.BounceTracking | None = None


def template_context(
    job: JobContent, *, address: str, name: str | None, variables: dict[str, Any] | None, date: datetime
) -> dict[str, Any]:
    """The variables a template sees: the tutorial's names, the job's variables over them, the recipient's over those.

    The tutorial's names are defaults: a variable the caller gives, even one called ``name``, is never hidden
    (the message's own From, To and Date headers do not come from these).
    """
    return {
        "to": address,
        "from": job.sender,
        "name": name or "",
        "subject": job.subject,
        "content": job.content,
        "date": date_value(date),
        **(job.variables or {}),
        **(variables or {}),
    }


def compose(
    renderer: TemplateRenderer,
    job: JobContent,
    *,
    address: str,
    name: str | None,
    variables: dict[str, Any] | None,
    position: int,
    date: datetime,
    builder: MessageBuilder | None = None,
    signer: DkimSigner | None = None,
) -> Envelope:
    """Render the job's template for one recipient and build the message; raises TemplateError.

    A batch passes one ``builder`` for all its messages, so what they share is encoded once;
    with a ``signer`` the message gets its DKIM-Signature, once every header is in place.
    """
    context = template_context(job, address=address, name=name, variables=variables, date=date)
    rendered = renderer.render(job.template, context)
    envelope = (builder or MessageBuilder(cache_size=1)).build(
        rendered,
        sender=job.sender,
        recipient=address,
        recipient_name=name,
        subject=job.subject,
        message_id=message_id_for(job.job_id, position, job.sender, job.bounces.secret if job.bounces else ""),
        date=date,
        headers=job.headers,
        attachments=job.attachments,
        unsubscribe_url=_unsubscribe_url(job, position),
        reference=_reference(job, position),
    )
    sender = (job.bounces.envelope_for(job.job_id, position) if job.bounces else None) or envelope.sender
    data = envelope.data if signer is None else signer.sign(envelope.data)  # DkimError is a TemplateError
    return Envelope(sender, envelope.recipient, data)


def _reference(job: JobContent, position: int) -> tuple[str, str] | None:
    if job.bounces is None or job.bounces.reference_header is None:
        return None
    return job.bounces.reference_header, verp.token_for(job.job_id, position, job.bounces.secret)


def _unsubscribe_url(job: JobContent, position: int) -> str | None:
    if job.unsubscribe is None:
        return None
    public_url, key = job.unsubscribe
    return unsubscribe.url_for(public_url, job.job_id, position, key)
