"""Templates as a resource: stored versions and template files, found by name, previewed on demand.

A stored template is an account's own or shared (every account uses it; operators change it). An account
finds a name among its own templates, then the shared ones, then the files; what it stores is its own.
Reads take the account looking (``account``; None: no account, which sees the shared templates), changes
the scope written (``scope``: an account's id, or None for the shared templates).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from email_service.config import Settings
from email_service.errors import Conflict, Forbidden, NotFound, TemplateError, ValidationFailed
from email_service.message.composing import JobContent, template_context
from email_service.message.mime import AttachmentFile
from email_service.message.rendering import TEMPLATE_NAME, TemplateRenderer, TemplateSource, is_valid_template_name
from email_service.message.verp import POSTMARK_REFERENCE_HEADER, BounceTracking
from email_service.services import Services
from email_service.storage import templates as template_store
from email_service.storage.models import Job, StoredTemplate, utcnow


class TemplateAccess(Protocol):
    """What finding and storing templates needs: a process's Services, or an operator command's
    ``DatabaseAccess``."""

    @property
    def sessions(self) -> sessionmaker[Session]: ...

    @property
    def readers(self) -> sessionmaker[Session]: ...

    @property
    def renderer(self) -> TemplateRenderer: ...


@dataclass(frozen=True)
class DatabaseAccess:
    """Templates for the operator's commands: the database's sessions and a renderer of the templates
    folders (to check what is stored and know the files), without the rest of the service."""

    sessions: sessionmaker[Session]
    renderer: TemplateRenderer

    @property
    def readers(self) -> sessionmaker[Session]:
        return self.sessions


@dataclass(frozen=True)
class TemplateFields:
    """What a caller gives to create or change a template: ``eml`` alone, or a subject and bodies."""

    subject: str | None = None
    text: str | None = None
    html: str | None = None
    eml: str | None = None


@dataclass(frozen=True)
class TemplateRecord:
    """A template as the API shows it; files have no version and no creation time. ``shared``: every
    account uses it and operators change it (a shared stored template, or a file)."""

    source: TemplateSource
    created_at: datetime | None
    shared: bool


@dataclass(frozen=True)
class Preview:
    subject: str
    text: str | None
    html: str | None


def resolve(access: TemplateAccess, name: str, version: int | None = None, *, account: str | None) -> TemplateSource:
    """The template a job of ``account`` named: its own stored template, else the shared one (its current
    version, or the one given), else a file. Deleted templates are not found: new jobs cannot use them."""
    if not is_valid_template_name(name):
        raise TemplateError(f"invalid template name {name!r}: must match {TEMPLATE_NAME.pattern}")
    try:
        return get(access, name, version, account=account).source
    except NotFound as exc:
        raise TemplateError(exc.message) from None


def get(access: TemplateAccess, name: str, version: int | None = None, *, account: str | None) -> TemplateRecord:
    """A template ``account`` sees by name: its own, else the shared one, else a file. Another account's
    template is not found, exactly as a name nobody uses; a deleted one neither (its versions stay for the
    jobs using them)."""
    stored = _visible(access, name, version, account)
    if stored is not None:
        return _record(stored)
    if version is not None:
        raise NotFound(f"template {name!r} has no version {version}")
    source = access.renderer.file_source(name)
    if source is None:
        raise NotFound(f"no template named {name!r}")
    return TemplateRecord(source, created_at=None, shared=True)


def list_all(access: TemplateAccess, *, account: str | None) -> list[TemplateRecord]:
    """The templates ``account`` uses, each at its current version: its own, then the shared ones it does
    not shadow, then the template files (with no account: the shared ones and the files)."""
    with access.readers() as session:
        own = template_store.all_current(session, account) if account is not None else []
        shared = template_store.all_current(session, None)
    names = {t.name for t in own}
    stored = [_record(t) for t in [*own, *(t for t in shared if t.name not in names)]]
    names |= {t.name for t in shared}
    files = [access.renderer.file_source(name) for name in access.renderer.file_names() if name not in names]
    return stored + [TemplateRecord(source, None, shared=True) for source in files if source is not None]


def versions(access: TemplateAccess, name: str, *, account: str | None) -> list[TemplateRecord]:
    """The versions of the stored template ``account`` sees by ``name`` (its own, else the shared one),
    newest first."""
    with access.readers() as session:
        current = template_store.visible_current(session, name, account)
        stored = template_store.versions(session, name, current.account_id) if current is not None else []
    if not stored:
        raise NotFound(f"no stored template named {name!r}")
    return [_record(t) for t in stored]


def create(access: TemplateAccess, name: str, fields: TemplateFields, *, scope: str | None) -> TemplateRecord:
    """Store version 1 of a new template of ``scope`` (an account's id; None: shared); 409 when the scope has
    a template of that name, or a file has it. An account may take the name of a shared template: it then
    uses its own."""
    _check_name(access, name)
    _check_fields(access, name, fields)
    with access.sessions.begin() as session:
        if template_store.current(session, name, scope) is not None:
            raise Conflict(f"template {name!r} exists; PUT /api/templates/{name} changes it")
        return _record(_add_version(session, name, scope, fields))


def update(
    access: TemplateAccess, name: str, fields: TemplateFields, *, scope: str | None
) -> tuple[TemplateRecord, bool]:
    """Store a new version of the template of ``scope`` (creating it if need be); True when it was created.
    An account changing a shared template's name makes its own template, which only it then uses."""
    _check_name(access, name)
    _check_fields(access, name, fields)
    with access.sessions.begin() as session:
        created = template_store.current(session, name, scope) is None
        return _record(_add_version(session, name, scope, fields)), created


def delete(access: TemplateAccess, name: str, *, scope: str | None) -> None:
    """Delete the template of ``scope``. A shared template is every account's to see, so an account is told
    (403) that it cannot delete one, rather than that it does not exist."""
    with access.sessions.begin() as session:
        if template_store.delete(session, name, scope, utcnow()):
            return
        shared = scope is not None and template_store.current(session, name, None) is not None
    if shared:
        raise Forbidden(f"template {name!r} is shared: shared templates are changed by operators")
    if access.renderer.file_source(name) is not None:
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


def draft_source(access: TemplateAccess, fields: TemplateFields) -> TemplateSource:
    """An unsaved template, checked like one being stored."""
    _check_fields(access, "draft", fields)
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
    """The template intake chose for the job, once per batch: the stored version it pinned, by its row (deleted
    or not), so that no template stored since, of any scope, changes its messages; with no version, a file (a
    stored template cannot take a file's name), read without asking the database."""
    if job.template_version is None:
        source = services.renderer.file_source(job.template)
        if source is None:
            raise TemplateError(f"template file {job.template!r} is gone from the templates folder")
        return source
    stored = None
    if job.template_id is not None:
        with services.readers() as session:
            stored = template_store.by_id(session, job.template_id)
    if stored is None:
        raise TemplateError(f"template {job.template!r} version {job.template_version} is gone")
    return _source(stored)


def _visible(access: TemplateAccess, name: str, version: int | None, account: str | None) -> StoredTemplate | None:
    """The stored version ``account`` means by ``name`` (and ``version``): of the scope the name resolves to,
    its own template, else the shared one; None when neither has it."""
    with access.readers() as session:
        current = template_store.visible_current(session, name, account)
        if current is None or version is None or version == current.version:
            return current
        return template_store.version(session, name, version, current.account_id)


# A stored template by this name would be shadowed by POST /api/templates/preview.
RESERVED_NAMES = frozenset({"preview"})


def _check_name(access: TemplateAccess, name: str) -> None:
    if name in RESERVED_NAMES:
        raise ValidationFailed("reserved name", [{"field": "name", "reason": f"{name!r} is reserved"}])
    if not is_valid_template_name(name):
        raise ValidationFailed(
            "invalid template name", [{"field": "name", "reason": f"must match {TEMPLATE_NAME.pattern}"}]
        )
    if access.renderer.file_source(name) is not None:
        raise Conflict(f"template {name!r} is a file in the templates folder; choose another name")


def _check_fields(access: TemplateAccess, name: str, fields: TemplateFields) -> None:
    if fields.eml is not None and any(v is not None for v in (fields.subject, fields.text, fields.html)):
        raise ValidationFailed(
            "eml excludes the other fields", [{"field": "eml", "reason": "give eml alone, or subject, text and html"}]
        )
    if all(v is None for v in (fields.text, fields.html, fields.eml)):
        raise ValidationFailed(
            "a template needs a body", [{"field": "text", "reason": "give text, html (or both), or eml"}]
        )
    try:
        access.renderer.check(TemplateSource(name=name, origin="draft", **vars(fields)))
    except TemplateError as exc:
        raise ValidationFailed("the template does not compile", [exc.detail(prefix=None)]) from None


def _add_version(session: Session, name: str, scope: str | None, fields: TemplateFields) -> StoredTemplate:
    try:
        with session.begin_nested():
            return template_store.add_version(session, name, scope, **vars(fields), now=utcnow())
    except IntegrityError:
        raise Conflict(f"template {name!r} was changed at the same time; send the change again") from None


def _source(stored: StoredTemplate) -> TemplateSource:
    return TemplateSource(
        name=stored.name,
        origin="stored",
        version=stored.version,
        stored_id=stored.id,
        subject=stored.subject,
        text=stored.text,
        html=stored.html,
        eml=stored.eml,
    )


def _record(stored: StoredTemplate) -> TemplateRecord:
    return TemplateRecord(_source(stored), stored.created_at, shared=stored.account_id is None)
