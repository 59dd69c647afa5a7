"""gunicorn's worker for `email-service serve`: gthread whose threads only ever see a request received whole.

gthread hands a connection to a thread as soon as its first byte arrives, and the thread then reads the
rest of the head and the body with blocking reads: a client that sends a byte every few seconds holds a
thread for as long as it likes, and a few such clients hold them all. Here the worker's event loop reads
each request (head, then a body of announced length or chunked) without blocking and without a thread;
only a complete request is given to a thread, which then reads it from memory. A request not received
whole within REQUEST_READ_TIMEOUT is dropped; a thread waits at most that long to write its answer to a
client that does not read it.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import socket
import time
from collections import deque
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

from email_service.config import Settings

MAX_HEAD_BYTES = 128 * 1024  # gunicorn's own limits refuse far less; past this the parser answers the error
_RECEIVE_SIZE = 256 * 1024
_HEAD_END = re.compile(rb"\r?\n\r?\n")
# Longer numbers do not match: the head goes to the parser, which refuses them.
_CONTENT_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*([0-9]{1,18})[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
_CHUNKED = re.compile(rb"^transfer-encoding[ \t]*:.*chunked", re.IGNORECASE | re.MULTILINE)
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[^\r\n]*\r\n")


class RequestBufferingWorker(ThreadWorker):  # type: ignore[misc]
    """gthread with request buffering in the event loop (see the module's docstring)."""

    def init_process(self) -> None:
        settings = Settings()  # the worker's process, once, before it serves
        self.read_timeout = settings.request_read_timeout
        self.max_body = settings.max_request_bytes
        self.receiving: deque[BufferedConn] = deque()  # in order of deadline
        super().init_process()

    def accept(self, listener: socket.socket) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except BlockingIOError:
            return
        except OSError as exc:  # ECONNABORTED and the like: that client is gone
            self.log.debug("accept failed: %s", exc)
            return
        self.nr_conns += 1
        self.enqueue_req(BufferedConn(self.cfg, client_sock, client_addr, listener.getsockname()))

    def enqueue_req(self, conn: Any) -> None:
        """Receive the connection's next request in the event loop; a thread gets it once it is whole."""
        if self.cfg.is_ssl:  # TLS records are read by the thread's SSL socket; serve behind nginx for TLS
            super().enqueue_req(conn)
            return
        conn.sock.setblocking(False)
        conn.receiving = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        conn.deadline = time.monotonic() + self.read_timeout
        self.receiving.append(conn)
        if request_length(conn.receiving, self.max_body) is not None:
            self._hand_over(conn)
        else:
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def murder_pending(self) -> None:
        """gthread's pending connections, and the requests not received whole in time."""
        super().murder_pending()
        now = time.monotonic()
        while self.receiving and self.receiving[0].deadline <= now:
            conn = self.receiving.popleft()
            self._unregister(conn)
            self.nr_conns -= 1
            conn.close()

    def handle_request(self, req: Any, conn: Any) -> Any:
        # The request is in memory: what is left on the socket is the answer, written within the timeout.
        conn.sock.settimeout(self.read_timeout)
        return super().handle_request(req, conn)

    def _on_readable(self, conn: BufferedConn, _sock: socket.socket) -> None:
        try:
            data = conn.sock.recv(_RECEIVE_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away before its request was whole
            self._unregister(conn)
            self.receiving.remove(conn)
            self.nr_conns -= 1
            conn.close()
            return
        conn.receiving += data
        if request_length(conn.receiving, self.max_body) is not None:
            self._unregister(conn)
            self._hand_over(conn)

    def _hand_over(self, conn: BufferedConn) -> None:
        self.receiving.remove(conn)
        conn.data_ready = True  # gthread must not wait on the socket for what is already here
        conn.sock.setblocking(True)
        if conn.parser is None:
            conn.received = conn.receiving
        else:
            conn.parser.unreader.unread(conn.receiving)
        conn.receiving = b""
        super().enqueue_req(conn)

    def _unregister(self, conn: BufferedConn) -> None:
        with contextlib.suppress(KeyError, ValueError):  # not registered: it was whole when it arrived
            self.poller.unregister(conn.sock)


class BufferedConn(TConn):  # type: ignore[misc]
    """gthread's connection, with the bytes the event loop received for its parser."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.receiving = b""  # being received in the event loop
        self.received = b""  # received before the parser existed: given to it when it is made
        self.deadline = 0.0

    def init(self) -> None:
        had_parser = self.parser is not None
        super().init()
        if not had_parser and self.received:
            self.parser.unreader.unread(self.received)
            self.received = b""


def request_length(data: bytes, max_body: int) -> int | None:
    """How many bytes of ``data`` make its first request once that request is whole, else None.

    A head too large, a body announced larger than ``max_body`` or a framing the parser will refuse counts
    as whole: the thread's parser answers the error without reading further.
    """
    head_end = _HEAD_END.search(data, 0, MAX_HEAD_BYTES + 4)
    if head_end is None:
        return len(data) if len(data) > MAX_HEAD_BYTES else None
    head, body_start = data[: head_end.start()], head_end.end()
    if _CHUNKED.search(head):
        end = _chunked_body_end(data, body_start, max_body)
        return None if end is None else end
    lengths = {int(text) for text in _CONTENT_LENGTH.findall(head)}
    if len(lengths) != 1:
        return body_start  # no body, or conflicting lengths the parser refuses
    length = lengths.pop()
    if length > max_body:
        return body_start  # answered 413 without its body being read
    return body_start + length if len(data) >= body_start + length else None


def _chunked_body_end(data: bytes, position: int, max_body: int) -> int | None:
    """Where a chunked body starting at ``position`` ends (after its trailers), or None while it is not whole."""
    total = 0
    while True:
        size_line = _CHUNK_SIZE.match(data, position)
        if size_line is None:
            incomplete = data.find(b"\n", position) < 0 and len(data) - position <= 1024
            return None if incomplete else position  # a malformed size line: the parser refuses it
        size = int(size_line.group(1), 16)
        total += size
        if total > max_body:
            return position  # over the limit: refused without reading on
        position = size_line.end()
        if size == 0:
            trailers_end = data.find(b"\r\n\r\n", position - 2)
            return None if trailers_end < 0 else trailers_end + 4
        position += size + 2  # the chunk and its CRLF
        if position > len(data):
            return None
