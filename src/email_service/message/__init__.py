"""Building one message: template rendering in a sandbox, the text part, the MIME structure, headers,
addresses, the unsubscribe link and DKIM. Pure functions of their input: no database, no network."""
