"""What the code's designs cost and save, per operation, each beside the plain way in the same run.

(1) Address validation: email-validator's validate_email (the baseline) beside the service's
    normalize_address, which validates each distinct domain once and the common local part with
    email-validator's own pattern; 100,000 addresses on 50 domains, as a large job's list is.
(2) A recipients list through the request schema: SendEmailBody validating 100,000 plain strings
    (the tagged union keeps strings strings), beside the same list given as objects.
(3) Building one message per recipient: the email package's EmailMessage, headers set and text +
    HTML alternatives added, then as_bytes (the baseline), beside MessageBuilder, which encodes what
    the recipients share once; the same rendering for both, rendering not timed.

Figures are CPU time (process_time) per operation, best of --repeat runs; ratios are baseline / service.

    .venv/bin/python bench/costs.py
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP

from email_validator import validate_email

from dkim_signing import CONTENT, TEMPLATE
from email_service.api.schemas import SendEmailBody
from email_service.message.addresses import normalize_address
from email_service.message.mime import MessageBuilder, date_value
from email_service.message.rendering import TemplateRenderer

DATE = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SENDER = "Hawkins Lab <news@example.org>"


def best_cpu(run: Callable[[], object], repeat: int) -> float:
    """The least CPU time of ``repeat`` runs, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return min(times)


def addresses(count: int) -> list[str]:
    return [f"reader.{i}@example{i % 50}.com" for i in range(count)]


def validate_with_email_validator(items: list[str]) -> None:
    for address in items:
        validate_email(address, check_deliverability=False)


def validate_with_the_service(items: list[str]) -> None:
    for address in items:
        normalize_address(address)


def build_with_email_message(rendered_text: str, rendered_html: str, count: int) -> None:
    for i in range(count):
        message = EmailMessage(policy=SMTP)
        message["From"] = SENDER
        message["To"] = f"Reader Number {i} <reader.{i}@example{i % 50}.com>"
        message["Subject"] = "Winter newsletter — nouvelles de l'hiver"
        message["Date"] = date_value(DATE)
        message["Message-ID"] = f"<{i}.bench@example.org>"
        message.set_content(rendered_text)
        message.add_alternative(rendered_html, subtype="html")
        message.as_bytes()


def build_with_message_builder(rendered: object, count: int) -> None:
    builder = MessageBuilder()
    for i in range(count):
        builder.build(
            rendered,  # type: ignore[arg-type]
            sender=SENDER,
            recipient=f"reader.{i}@example{i % 50}.com",
            recipient_name=f"Reader Number {i}",
            subject="Winter newsletter — nouvelles de l'hiver",
            message_id=f"<{i}.bench@example.org>",
            date=DATE,
        )


def line(label: str, seconds: float, count: int, unit: str = "µs") -> str:
    scale = 1e6 if unit == "µs" else 1e3
    return f"  {label:<58} {seconds / count * scale:8.2f} {unit} each  ({seconds:.3f} s for {count:,})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--addresses", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    items = addresses(args.addresses)
    print(f"(1) address validation, {args.addresses:,} addresses on 50 domains")
    baseline = best_cpu(lambda: validate_with_email_validator(items), args.repeat)
    service = best_cpu(lambda: validate_with_the_service(items), args.repeat)
    print(line("email-validator validate_email (baseline)", baseline, args.addresses))
    print(line("normalize_address", service, args.addresses))
    print(f"  ratio: {baseline / service:.1f}x")

    print(f"(2) SendEmailBody with {args.addresses:,} recipients")
    as_strings = {"recipients": items, "subject": "s", "content": "c"}
    as_objects = {"recipients": [{"email": a} for a in items], "subject": "s", "content": "c"}
    strings = best_cpu(lambda: SendEmailBody.model_validate(as_strings), args.repeat)
    objects = best_cpu(lambda: SendEmailBody.model_validate(as_objects), args.repeat)
    print(f"  {'plain strings':<58} {strings * 1e3:8.1f} ms for the list")
    print(f"  {'{email} objects':<58} {objects * 1e3:8.1f} ms for the list")

    rendered = TemplateRenderer().render(
        TEMPLATE, {"subject": "Winter newsletter", "name": "Reader", "content": CONTENT}
    )
    assert rendered.text is not None and rendered.html is not None
    print(f"(3) building {args.messages:,} messages (text + HTML, {len(rendered.html):,} characters of HTML)")
    baseline = best_cpu(lambda: build_with_email_message(rendered.text, rendered.html, args.messages), args.repeat)
    service = best_cpu(lambda: build_with_message_builder(rendered, args.messages), args.repeat)
    print(line("EmailMessage + as_bytes (baseline)", baseline, args.messages))
    print(line("MessageBuilder.build", service, args.messages))
    print(f"  ratio: {baseline / service:.1f}x")


if __name__ == "__main__":
    main()
