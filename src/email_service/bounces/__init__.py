"""Feedback after the relay said yes: bounces (RFC 3464 DSNs, plain-text bounces, providers' events)
and complaints (RFC 5965 ARF), parsed into ``Feedback`` values. Pure: nothing here touches the
database; ``services.bounces`` matches feedback to its recipient and records it."""
