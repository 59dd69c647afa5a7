"""Rates written as text in the settings: ``gmail.com=20/s,yahoo.com=600/m``."""

from __future__ import annotations

import re

_RATE = re.compile(r"\s*([^=\s]+)\s*=\s*([0-9.]+)\s*/\s*(s|m|h)\s*")
_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_domain_rates(text: str) -> dict[str, float]:
    """``gmail.com=20/s,yahoo.com=600/m`` -> messages per second for each domain."""
    rates: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = _RATE.fullmatch(item)
        if match is None:
            raise ValueError(f"DOMAIN_RATES: {item!r} is not like gmail.com=20/s")
        rates[match.group(1).lower()] = float(match.group(2)) / _PER[match.group(3)]
    return rates
