"""``python -m email_service`` is the ``email-service`` command."""

from .cli import main

main()
