"""Logging set-up: stderr always, plus the tutorial's rotating file when LOG_PATH is set; addresses masked."""

from __future__ import annotations

import logging
import re
import sys
from logging.handlers import RotatingFileHandler

from email_service.config import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
_HANDLER_MARK = "_email_service_handler"
# An address anywhere in a line: a local part and a domain with a dot, without the characters that
# surround addresses in text (<>, quotes, brackets, commas, colons).
_DELIMITERS = r"\s<>()\[\]{},;:\"'@"
_ADDRESS = re.compile(rf"([^{_DELIMITERS}]+)@([^{_DELIMITERS}]+\.[^{_DELIMITERS}.]+)")


def mask_addresses(text: str) -> str:
    """``will@example.com`` becomes ``w***@example.com``: the domain is enough to follow deliveries."""
    return _ADDRESS.sub(lambda match: f"{match.group(1)[0]}***@{match.group(2)}", text)


class MaskingFormatter(logging.Formatter):
    """Masks the addresses in records at INFO and above, exception text included. Relays often quote
    the recipient in their replies, and the service logs replies; DEBUG (asked for to trace one
    delivery) keeps them."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return mask_addresses(text) if record.levelno >= logging.INFO else text


def configure_logging(settings: Settings) -> None:
    """Attach the service's handlers to the ``email_service`` logger, once per process."""
    logger = logging.getLogger("email_service")
    logger.setLevel(settings.log_level.upper())
    logger.propagate = False
    for handler in [h for h in logger.handlers if getattr(h, _HANDLER_MARK, False)]:
        logger.removeHandler(handler)
        handler.close()

    formatter = MaskingFormatter(LOG_FORMAT)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if settings.log_path:
        settings.log_path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            RotatingFileHandler(
                settings.log_path,
                maxBytes=settings.log_size,
                backupCount=settings.log_count,
                encoding=settings.log_encoding,
            )
        )
    for handler in handlers:
        setattr(handler, _HANDLER_MARK, True)
        handler.setFormatter(formatter)
        logger.addHandler(handler)
