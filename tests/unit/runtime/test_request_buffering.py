"""When serve's event loop holds a request as received whole: never early (a thread would then wait on
the client), never later than its last byte."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from email_service.runtime.request_buffering import MAX_HEAD_BYTES, request_length

MAX_BODY = 1_000_000


def _head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _chunked(body: bytes, sizes: list[int], trailers: str = "") -> bytes:
    out, start = b"", 0
    for size in sizes:
        piece = body[start : start + size]
        start += size
        if piece:
            out += f"{len(piece):x};ext=1\r\n".encode() + piece + b"\r\n"
    return out + b"0\r\n" + trailers.encode() + b"\r\n"


requests = st.one_of(
    st.builds(lambda path: _head(f"GET /{path} HTTP/1.1", "Host: a"), st.text("abc/?=&", max_size=50)),
    st.builds(
        lambda body: _head("POST /api/email/ HTTP/1.1", "Host: a", f"content-LENGTH:  {len(body)}") + body,
        st.binary(max_size=300),
    ),
    st.builds(
        lambda body, sizes, trailers: (
            _head("POST / HTTP/1.1", "Transfer-Encoding: chunked") + _chunked(body, sizes, trailers)
        ),
        st.binary(max_size=300),
        st.lists(st.integers(1, 40), min_size=1, max_size=20),
        st.sampled_from(["", "X-Trailer: 1\r\n"]),
    ),
)


@given(requests, st.data())
def test_a_request_is_whole_at_its_last_byte_and_not_before(request: bytes, data: st.DataObject):
    cut = data.draw(st.integers(0, len(request) - 1))
    assert request_length(request[:cut], MAX_BODY) is None
    assert request_length(request, MAX_BODY) == len(request)
    # What the client pipelined behind it is the next request's, not this one's.
    assert request_length(request + b"GET / HTTP/1.1\r\n", MAX_BODY) == len(request)


def test_what_the_parser_refuses_at_once_is_handed_over_without_waiting_for_more():
    head = _head("POST / HTTP/1.1", "Content-Length: 5", "Content-Length: 6")
    assert request_length(head, MAX_BODY) == len(head)  # conflicting lengths
    head = _head("POST / HTTP/1.1", f"Content-Length: {MAX_BODY + 1}")
    assert request_length(head, MAX_BODY) == len(head)  # 413 without reading the body
    head = _head("POST / HTTP/1.1", "Content-Length: " + "9" * 5000)
    assert request_length(head, MAX_BODY) == len(head)  # absurd length: the parser's 400
    head = _head("POST / HTTP/1.1", "Transfer-Encoding: chunked")
    assert request_length(head + b"zz\r\n", MAX_BODY) == len(head)  # a malformed chunk size
    assert request_length(head + f"{MAX_BODY + 1:x}\r\n".encode(), MAX_BODY) == len(head)
    endless = b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD_BYTES
    assert request_length(endless, MAX_BODY) == len(endless)  # a head past any limit
