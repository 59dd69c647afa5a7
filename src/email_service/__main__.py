"""``python -m email_service`` is the ``email-service`` command."""

from email_service.cli import main

main()
