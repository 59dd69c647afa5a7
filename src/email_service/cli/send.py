"""``email-service send``: a bulk send from the command line, through the HTTP API.

It reads recipients from a CSV or JSON file, posts the job with the Python client, follows it with a
progress bar and ends with a summary of the failures.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

if TYPE_CHECKING:
    from email_service.client import ApiError, EmailServiceClient, Job


class InputError(click.ClickException):
    """A bad recipients file or option: reported before anything is sent (exit status 2)."""

    exit_code = 2


@click.command()
@click.argument("recipients_file", metavar="RECIPIENTS_FILE")
@click.option("--subject", required=True, help="Subject line (a template variable too).")
@click.option("--content", default=None, help="Text given to the template as `content`.")
@click.option(
    "--content-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Read the content from a file."
)
@click.option("--template", default="default", show_default=True, help="Template name.")
@click.option("--var", "var_items", multiple=True, metavar="KEY=VALUE", help="A variable for every recipient.")
@click.option(
    "--variables-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A JSON object of variables for every recipient (--var wins).",
)
@click.option(
    "--attach", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Attach a file."
)
@click.option("--reply-to", default=None, help="Reply-To address.")
@click.option("--tag", "tags", multiple=True, help="A tag of the job.")
@click.option("--send-at", default=None, metavar="WHEN", help="ISO 8601 time with offset, or duration (PT10M).")
@click.option("--expires-at", default=None, metavar="WHEN", help="Stop sending then (same forms as --send-at).")
@click.option("--callback-url", default=None, help="Webhook called when the job finishes.")
@click.option("--idempotency-key", default=None, help="Sending again with the same key answers the same job.")
@click.option(
    "--url",
    envvar="EMAIL_SERVICE_URL",
    show_envvar=True,
    default="http://127.0.0.1:8000",
    show_default=True,
    help="Address of the service's HTTP API.",
)
@click.option(
    "--api-key", envvar="EMAIL_SERVICE_API_KEY", show_envvar=True, default=None, help="Sent as a Bearer token."
)
@click.option("--no-wait", is_flag=True, help="Print the job id and exit without following the job.")
@click.option(
    "--show-failures", type=click.IntRange(min=0), default=20, show_default=True, help="Failed recipients listed."
)
def send(
    recipients_file: str,
    subject: str,
    content: str | None,
    content_file: Path | None,
    template: str,
    var_items: tuple[str, ...],
    variables_file: Path | None,
    attach: tuple[Path, ...],
    reply_to: str | None,
    tags: tuple[str, ...],
    send_at: str | None,
    expires_at: str | None,
    callback_url: str | None,
    idempotency_key: str | None,
    url: str,
    api_key: str | None,
    no_wait: bool,
    show_failures: int,
) -> None:
    """Send one message to each recipient of RECIPIENTS_FILE and follow the job until it ends.

    RECIPIENTS_FILE is a .csv file (a header row with an `email` column, optionally `name`; every other
    column is a variable of that recipient), a .json file (a list of addresses or {email, name, variables}
    objects, or {"recipients": [...]}), or - for JSON on standard input.

    Prints the job id, a progress bar on stderr, then the counts per status and the failed recipients.
    Exit status: 0 every recipient sent, 1 the service refused the job or could not be reached,
    2 bad input (nothing sent), 3 some recipients were not sent (failed, expired, or cancelled).
    """
    from email_service.client import ApiError, ClientError, EmailServiceClient, attachment

    recipients, lines = _read_recipients(recipients_file)
    if content is not None and content_file is not None:
        raise InputError("give --content or --content-file, not both")
    if content_file is not None:
        content = _read_text(content_file)
    variables = _read_variables(variables_file, var_items)
    try:
        attachments = [attachment(path) for path in attach]
    except OSError as exc:
        raise InputError(f"{exc.filename}: {exc.strerror}") from None

    with EmailServiceClient(url, api_key=api_key) as client:
        try:
            accepted = client.send(
                recipients,
                subject,
                content or "",
                template,
                idempotency_key=idempotency_key,
                variables=variables or None,
                reply_to=reply_to,
                tags=list(tags) or None,
                attachments=attachments or None,
                send_at=send_at,
                expires_at=expires_at,
                callback_url=callback_url,
            )
        except ApiError as exc:
            _echo_refusal(exc, recipients_file, lines)
            sys.exit(1)
        except ClientError as exc:
            click.echo(f"error: could not reach the service at {url}: {exc.__cause__ or exc}", err=True)
            sys.exit(1)
        job_id = accepted["id"]
        click.echo(job_id)
        replayed = " (an earlier request with this idempotency key: same job)" if accepted["replayed"] else ""
        click.echo(f"job {job_id} {accepted['status']}: {accepted['total']} recipient(s){replayed}", err=True)
        if no_wait:
            return
        progress = Progress(sys.stderr)
        try:
            job = client.wait(job_id, on_progress=progress.update)
            progress.finish()
            sys.exit(_summary(client, job, show_failures))
        except KeyboardInterrupt:
            progress.finish()
            click.echo(f"stopped following; job {job_id} goes on: {url}/api/email/{job_id}", err=True)
            sys.exit(130)
        except ClientError as exc:
            progress.finish()
            click.echo(f"error: lost the service while following job {job_id} (it goes on): {exc}", err=True)
            sys.exit(1)


class Progress:
    """A job's progress on a stream: a bar redrawn in place on a terminal, a plain line every few seconds otherwise."""

    plain_every = 5.0  # seconds between two lines in a log, where redrawing is impossible
    width = 30

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._drawn = 0  # length of the line on screen
        self._last_plain = -self.plain_every
        self._last_text = ""

    def update(self, job: Job) -> None:
        text = _progress_line(job, self.width)
        if self.tty:
            text = text[: self._columns() - 1]  # a wrapped line could not be redrawn with \r
            self.stream.write("\r" + text.ljust(self._drawn))
            self._drawn = len(text)
        elif text != self._last_text and (
            time.monotonic() - self._last_plain >= self.plain_every or job["status"] in ("completed", "cancelled")
        ):
            self.stream.write(text + "\n")
            self._last_plain, self._last_text = time.monotonic(), text
        self.stream.flush()

    def _columns(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns or 80
        except (OSError, ValueError):
            return 80

    def finish(self) -> None:
        """End the redrawn line, so what follows starts on a line of its own."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = 0


def _progress_line(job: Job, width: int) -> str:
    filled = int(job["progress"] * width)
    counts = ", ".join(f"{status} {count}" for status, count in _ordered(job["counts"]) if status != "pending")
    bar = "#" * filled + "-" * (width - filled)
    return f"[{bar}] {job['progress']:4.0%} {job['current']}/{job['total']} {job['status']}" + (
        f": {counts}" if counts else ""
    )


# Outcomes first, then what is still on its way.
STATUS_ORDER = ("sent", "suppressed", "failed", "expired", "cancelled", "deferred", "sending", "pending")


def _ordered(counts: dict[str, int]) -> list[tuple[str, int]]:
    """The non-zero counts, in STATUS_ORDER (statuses it does not know last)."""
    rank = {status: at for at, status in enumerate(STATUS_ORDER)}
    return sorted(((s, n) for s, n in counts.items() if n), key=lambda item: rank.get(item[0], len(rank)))


def _summary(client: EmailServiceClient, job: Job, show: int) -> int:
    """Counts per status and the first ``show`` failed or expired recipients; the exit status."""
    counts = dict(_ordered(job["counts"]))
    click.echo(f"job {job['id']} {job['status']}: {job['total']} recipient(s)")
    for status, count in counts.items():
        click.echo(f"  {status:<11}{count:>9}")
    failures = counts.get("failed", 0) + counts.get("expired", 0)
    if failures and show:
        listed = list(
            itertools.islice(
                itertools.chain.from_iterable(
                    client.iter_recipients(job["id"], status, page_size=min(show, 1000))
                    for status in ("failed", "expired")
                ),
                show,
            )
        )
        click.echo(f"not sent ({failures}):" if failures <= show else f"not sent ({failures}, first {show}):")
        width = max(len(r["email"]) for r in listed) if listed else 0
        for recipient in listed:
            code = str(recipient["error_code"] or "-")
            reason = " ".join((recipient["error"] or "").split()).removeprefix(f"{code} ")  # the text may repeat it
            click.echo(f"  {recipient['email']:<{width}}  {recipient['status']:<8} {code:>3}  {reason}")
        if failures > len(listed):
            click.echo(f"  ... and {failures - len(listed)} more: {client.base_url}/api/email/{job['id']}/recipients")
    delivered = counts.get("sent", 0) + counts.get("suppressed", 0)
    return 0 if delivered == job["total"] else 3


def _echo_refusal(error: ApiError, source: str, lines: list[int] | None) -> None:
    """The service's error, each detail on a line; a recipient's problem names its CSV line too."""
    click.echo(f"error: the service refused the job: {error.status_code} {error.code}: {error.message}", err=True)
    for detail in error.details:
        where = detail.get("field") or "body"
        index = detail.get("index")
        if index is not None and lines is not None and 0 <= index < len(lines):
            where += f" ({source}, line {lines[index]})"
        if detail.get("line") is not None:
            where += f" (template line {detail.get('line')})"
        if detail.get("variable"):
            where += f" (variable {detail.get('variable')!r})"
        click.echo(f"  {where}: {detail.get('reason', '')}", err=True)


def _read_text(path: Path) -> str:
    try:
        return _decode(path.read_bytes(), str(path))
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}") from None


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")  # -sig: spreadsheets often start files with a BOM
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not UTF-8 text (byte {exc.start})") from None


def _read_variables(path: Path | None, items: tuple[str, ...]) -> dict[str, Any]:
    variables: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = json.loads(_read_text(path))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}, line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}") from None
        if not isinstance(loaded, dict):
            raise InputError(f"{path}: --variables-file must hold a JSON object {{name: value, ...}}")
        variables.update(loaded)
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise InputError(f"--var {item!r}: expected KEY=VALUE")
        variables[key.strip()] = value
    return variables


def _read_recipients(source: str) -> tuple[list[Any], list[int] | None]:
    """The recipients of a .csv or .json file, or of JSON on stdin; for a CSV, each one's line."""
    if source == "-":
        return _json_recipients(_decode(sys.stdin.buffer.read(), "stdin"), "stdin"), None
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise InputError(f"{source}: RECIPIENTS_FILE must be a .csv or .json file, or - for JSON on stdin")
    text = _read_text(path)
    if suffix == ".json":
        return _json_recipients(text, source), None
    return _csv_recipients(text, source)


def _csv_recipients(text: str, source: str) -> tuple[list[Any], list[int]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [column.strip() for column in next(reader)]
    except StopIteration:
        raise InputError(f"{source}: empty; the first line names the columns (email, name, ...)") from None
    except csv.Error as exc:
        raise InputError(f"{source}, line 1: {exc}") from None
    names = [column.lower() for column in header]
    if "email" not in names:
        raise InputError(f"{source}, line 1: the header has no 'email' column (it has {', '.join(header)})")
    named = [column for column in header if column]
    if len(set(named)) < len(named):
        repeated = sorted({column for column in named if named.count(column) > 1})
        raise InputError(f"{source}, line 1: column {repeated[0]!r} appears twice in the header")
    email_at, name_at = names.index("email"), names.index("name") if "name" in names else None
    recipients: list[Any] = []
    lines: list[int] = []
    try:
        for row in reader:
            cells = [cell.strip() for cell in row]
            if not any(cells):
                continue  # a blank line
            line = reader.line_num
            if len(cells) > len(header):
                raise InputError(f"{source}, line {line}: {len(cells)} cells but {len(header)} columns in the header")
            cells += [""] * (len(header) - len(cells))
            if not cells[email_at]:
                raise InputError(f"{source}, line {line}: no address in the {header[email_at]!r} column")
            variables: dict[str, str] = {}
            for at, (column, cell) in enumerate(zip(header, cells, strict=True)):
                if at in (email_at, name_at) or not cell:
                    continue
                if not column:
                    raise InputError(f"{source}, line {line}: a value in column {at + 1}, which has no name")
                variables[column] = cell
            name = cells[name_at] if name_at is not None and cells[name_at] else None
            recipient: dict[str, Any] = {"email": cells[email_at]}
            if name is not None:
                recipient["name"] = name
            if variables:
                recipient["variables"] = variables
            recipients.append(recipient if len(recipient) > 1 else cells[email_at])
            lines.append(line)
    except csv.Error as exc:
        raise InputError(f"{source}, line {reader.line_num}: {exc}") from None
    if not recipients:
        raise InputError(f"{source}: no recipients below the header")
    return recipients, lines


def _json_recipients(text: str, source: str) -> list[Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}, line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}") from None
    items = data.get("recipients") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise InputError(f'{source}: expected a list of recipients, or an object {{"recipients": [...]}}')
    for index, item in enumerate(items):
        where = f"{source}, recipients[{index}]"
        if isinstance(item, str):
            continue
        if not isinstance(item, dict):
            raise InputError(f"{where}: a recipient is an address string or an object {{email, name, variables}}")
        unknown = sorted(set(item) - {"email", "name", "variables"})
        if unknown:
            raise InputError(f"{where}: unknown field {unknown[0]!r} (a recipient has email, name, variables)")
        if not isinstance(item.get("email"), str) or not item["email"].strip():
            raise InputError(f"{where}: 'email' must be a non-empty string")
        if item.get("name") is not None and not isinstance(item["name"], str):
            raise InputError(f"{where}: 'name' must be a string")
        if item.get("variables") is not None and not isinstance(item["variables"], dict):
            raise InputError(f"{where}: 'variables' must be an object")
    if not items:
        raise InputError(f"{source}: no recipients")
    return items
