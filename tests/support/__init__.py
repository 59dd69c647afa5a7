"""Helpers the tests share: real servers the tests start (SMTP sinks, relays, proxies, a webhook receiver),
the service's processes, and the machine's servers."""

from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
