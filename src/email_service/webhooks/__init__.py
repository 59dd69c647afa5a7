"""Webhook events: how they are signed and POSTed to a caller's URL (the outbox that schedules them lives elsewhere)."""
