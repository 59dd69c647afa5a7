"""The HTTP edge: parse, call a service, answer in JSON."""
