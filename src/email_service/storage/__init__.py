"""Persistence: the SQL database is the source of truth for jobs and every recipient's outcome."""
