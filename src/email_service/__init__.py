"""email_service: a self-hosted bulk email micro-service."""

__version__ = "0.1.0"
