"""Outbound HTTP on a caller's behalf: which destinations are allowed, and the client that keeps to them."""
