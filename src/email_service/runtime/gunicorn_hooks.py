"""gunicorn's configuration for `email-service serve` (``--config python:email_service.runtime.gunicorn_hooks``)."""

from __future__ import annotations

from typing import Any

from email_service.runtime.metrics_export import process_ended

# Requests are received whole in each worker's event loop before a thread handles them: slow clients hold no
# thread, and a long request (a large job, a template render) does not stop the others being answered.
worker_class = "email_service.runtime.request_buffering.RequestBufferingWorker"

# Forwarded headers are trusted in one place only: the app's PROXY_HOPS (werkzeug's ProxyFix). Left alone,
# gunicorn would also take X-Forwarded-Proto (and SCRIPT_NAME/PATH_INFO headers) from 127.0.0.1 and, always,
# from any peer on a unix socket, whatever PROXY_HOPS says.
secure_scheme_headers: dict[str, str] = {}
forwarded_allow_ips = ""
forwarder_headers = ""

# gunicorn's default format plus the scheme: the client address (%(h)s) and scheme are read after the app
# ran, so they show what PROXY_HOPS made of the forwarded headers.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %({wsgi.url_scheme}e)s'


def child_exit(server: Any, worker: Any) -> None:
    """A worker process ended (gunicorn starts another): its share of the live gauges goes with it."""
    process_ended(worker.pid)
