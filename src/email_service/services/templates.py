"""Templates as a resource: stored versions and template files, found by name, previewed on demand."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from email_service.config import Settings
from email_service.errors import Conflict, NotFound, TemplateError, ValidationFailed
from email_service.message.composing import JobContent, template_context
from email_service.message.mime import AttachmentFile
from email_service.message.rendering import TEMPLATE_NAME, TemplateSource, is_valid_template_name
from email_service.message.verp import POSTMARK_REFERENCE_HEADER, BounceTracking
from email_service.services import Services
from email_service.storage import templates as template_store
from email_service.storage.models import Job, StoredTemplate, utcnow


@dataclass(frozen=True)
class TemplateFields:
    """What a caller gives to create or change a template: ``eml`` alone, or a subject and bodies."""

    subject: str | None = None
    text: str | None = None
    html: str | None = None
    eml: str | None = None


@dataclass(frozen=True)
class TemplateRecord:
    """A template as the API shows it; files have no version and no creation time."""

    source: TemplateSource
    created_at: datetime | None


@dataclass(frozen=True)
class Preview:
    subject: str
    text: str | None
    html: str | None


def resolve(
    services: Services, name: str, version: int | None = None, *, include_deleted: bool = False
) -> TemplateSource:
    """The template a job named: a stored one (its current version, or the one given) or a file.

    A deleted template's versions are found only with ``include_deleted``: for the jobs accepted
    before it was deleted, never for a new one.
    """
    if not is_valid_template_name(name):
        raise TemplateError(f"invalid template name {name!r}: must match {TEMPLATE_NAME.pattern}")
    with services.readers() as session:
        if version is not None:
            stored = template_store.version(session, name, version, include_deleted=include_deleted)
            if stored is None:
                raise TemplateError(f"template {name!r} has no version {version}")
            return _source(stored)
        stored = template_store.current(session, name)
    if stored is not None:
        return _source(stored)
    source = services.renderer.file_source(name)
    if source is None:
        raise TemplateError(f"unknown template {name!r}")
    return source


def get(services: Services, name: str, version: int | None = None) -> TemplateRecord:
    """A template by name; a deleted one is not found (its versions stay for the jobs using them)."""
    if version is not None:
        with services.readers() as session:
            stored = template_store.version(session, name, version)
        if stored is None:
            raise NotFound(f"template {name!r} has no version {version}")
        return _record(stored)
    try:
        source = resolve(services, name)
    except TemplateError:
        raise NotFound(f"no template named {name!r}") from None
    if source.origin == "stored":
        assert source.version is not None
        return get(services, name, source.version)
    return TemplateRecord(source, created_at=None)


def list_all(services: Services) -> list[TemplateRecord]:
    """Every stored template (its current version), then the template files with other names."""
    with services.readers() as session:
        stored = [_record(t) for t in template_store.all_current(session)]
    names = {record.source.name for record in stored}
    files = [services.renderer.file_source(name) for name in services.renderer.file_names() if name not in names]
    return stored + [TemplateRecord(source, None) for source in files if source is not None]


def versions(services: Services, name: str) -> list[TemplateRecord]:
    with services.readers() as session:
        stored = template_store.versions(session, name)
    if not stored:
        raise NotFound(f"no stored template named {name!r}")
    return [_record(t) for t in stored]


def create(services: Services, name: str, fields: TemplateFields) -> TemplateRecord:
    """Store version 1 of a new template; 409 when the name is taken (by a stored template or a file)."""
    _check_name(services, name)
    _check_fields(services, name, fields)
    with services.sessions.begin() as session:
        if template_store.current(session, name) is not None:
            raise Conflict(f"template {name!r} exists; PUT /api/templates/{name} changes it")
        return _record(_add_version(session, name, fields))


def update(services: Services, name: str, fields: TemplateFields) -> tuple[TemplateRecord, bool]:
    """Store a new version of a template (creating it if need be); True when it was created."""
    _check_name(services, name)
    _check_fields(services, name, fields)
    with services.sessions.begin() as session:
        created = template_store.current(session, name) is None
        return _record(_add_version(session, name, fields)), created


def delete(services: Services, name: str) -> None:
    with services.sessions.begin() as session:
        if template_store.delete(session, name, utcnow()):
            return
    if services.renderer.file_source(name) is not None:
        raise Conflict(f"template {name!r} is a file in the templates folder; remove the file instead")
    raise NotFound(f"no stored template named {name!r}")


def preview(
    services: Services,
    source: TemplateSource,
    *,
    variables: dict[str, Any] | None,
    subject: str,
    content: str,
    email: str,
    name: str | None,
) -> Preview:
    """Render a template as one recipient would see it; ValidationFailed carries the part, line and
    variable of a render error."""
    job = JobContent(
        job_id="preview",
        template=source,
        sender=services.settings.mail_default_sender,
        subject=subject,
        content=content,
    )
    context = template_context(job, address=email, name=name, variables=variables, date=utcnow())
    try:
        rendered = services.renderer.render(source, context)
    except TemplateError as exc:
        raise ValidationFailed("the template does not render", [exc.detail()]) from None
    return Preview(subject=rendered.header("Subject") or subject, text=rendered.text, html=rendered.html)


def draft_source(services: Services, fields: TemplateFields) -> TemplateSource:
    """An unsaved template, checked like one being stored."""
    _check_fields(services, "draft", fields)
    return TemplateSource(name="draft", origin="draft", **vars(fields))


def job_content(
    services: Services, job: Job, attachments: tuple[AttachmentFile, ...], template: TemplateSource | None = None
) -> JobContent:
    """What every message of the job shares (its ``template`` looked up unless given); raises
    TemplateError when the template is gone."""
    extra_headers = (("Reply-To", job.reply_to),) if job.reply_to else ()
    return JobContent(
        job_id=job.id,
        template=template or _pinned(services, job),
        sender=job.sender,
        subject=job.subject,
        content=job.content,
        variables=job.variables,
        headers=extra_headers + tuple((job.headers or {}).items()),
        attachments=attachments,
        unsubscribe=(services.settings.public_url, job.unsubscribe_key) if job.unsubscribe_key else None,
        bounces=_bounce_tracking(services.settings),
    )


def _bounce_tracking(settings: Settings) -> BounceTracking | None:
    secret = settings.bounce_secret.get_secret_value()
    if not secret:
        return None
    # Postmark replaces the Message-ID and echoes only metadata headers back in its bounce events.
    postmark = bool(settings.postmark_webhook_password.get_secret_value())
    return BounceTracking(
        secret, settings.bounce_local_part, settings.bounce_domain, POSTMARK_REFERENCE_HEADER if postmark else None
    )


def _pinned(services: Services, job: Job) -> TemplateSource:
    """The template intake chose for the job: the stored version it pinned, or, with no version, a file
    (a stored template cannot take a file's name), read without asking the database: once per batch."""
    if job.template_version is None:
        source = services.renderer.file_source(job.template)
        if source is not None:
            return source
    return resolve(services, job.template, job.template_version, include_deleted=True)


# A stored template by this name would be shadowed by POST /api/templates/preview.
RESERVED_NAMES = frozenset({"preview"})


def _check_name(services: Services, name: str) -> None:
    if name in RESERVED_NAMES:
        raise ValidationFailed("reserved name", [{"field": "name", "reason": f"{name!r} is reserved"}])
    if not is_valid_template_name(name):
        raise ValidationFailed(
            "invalid template name", [{"field": "name", "reason": f"must match {TEMPLATE_NAME.pattern}"}]
        )
    if services.renderer.file_source(name) is not None:
        raise Conflict(f"template {name!r} is a file in the templates folder; choose another name")


def _check_fields(services: Services, name: str, fields: TemplateFields) -> None:
    if fields.eml is not None and any(v is not None for v in (fields.subject, fields.text, fields.html)):
        raise ValidationFailed(
            "eml excludes the other fields", [{"field": "eml", "reason": "give eml alone, or subject, text and html"}]
        )
    if all(v is None for v in (fields.text, fields.html, fields.eml)):
        raise ValidationFailed(
            "a template needs a body", [{"field": "text", "reason": "give text, html (or both), or eml"}]
        )
    try:
        services.renderer.check(TemplateSource(name=name, origin="draft", **vars(fields)))
    except TemplateError as exc:
        raise ValidationFailed("the template does not compile", [exc.detail(prefix=None)]) from None


def _add_version(session: Any, name: str, fields: TemplateFields) -> StoredTemplate:
    try:
        with session.begin_nested():
            return template_store.add_version(session, name, **vars(fields), now=utcnow())
    except IntegrityError:
        raise Conflict(f"template {name!r} was changed at the same time; send the change again") from None


def _source(stored: StoredTemplate) -> TemplateSource:
    return TemplateSource(
        name=stored.name,
        origin="stored",
        version=stored.version,
        subject=stored.subject,
        text=stored.text,
        html=stored.html,
        eml=stored.eml,
    )


def _record(stored: StoredTemplate) -> TemplateRecord:
    return TemplateRecord(_source(stored), stored.created_at)
