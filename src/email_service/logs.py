"""Logging set-up: stderr always, plus the tutorial's rotating file when LOG_PATH is set."""

from __future__ import annotations

import logging
import sys
from logging.handlers import RotatingFileHandler

from .config import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
_HANDLER_MARK = "_email_service_handler"


def configure_logging(settings: Settings) -> None:
    """Attach the service's handlers to the ``email_service`` logger, once per process."""
    logger = logging.getLogger("email_service")
    logger.setLevel(settings.log_level.upper())
    logger.propagate = False
    for handler in [h for h in logger.handlers if getattr(h, _HANDLER_MARK, False)]:
        logger.removeHandler(handler)
        handler.close()

    formatter = logging.Formatter(LOG_FORMAT)
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
