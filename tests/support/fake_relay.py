"""A lean, scriptable SMTP relay on loopback for fault tests and benchmarks.

aiosmtpd tops out near 1,300 messages/s and cannot misbehave on cue; this relay can: delay every
reply by a round-trip time, offer PIPELINING, refuse chosen recipients (and a nested MAIL, as real
relays do), answer 4xx/5xx after the data (or after one recipient's), drop the connection before
replying, refuse connections for a while, never answer, or accept only R messages per second (454
beyond). It records what it accepted by Message-ID.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


@dataclass
class Behaviour:
    """What the relay does; tests change it while the relay runs."""

    rtt: float = 0.0  # seconds added before each reply, like a distant relay
    greeting: str = "220 fake-relay ESMTP"
    ehlo_reply: str | None = None  # e.g. "502 5.5.2 Command not recognized": HELO still works
    mail_reply: str = "250 2.1.0 OK"
    pipelining: bool = True
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # address -> reply at RCPT
    data_reply: str = "250 2.0.0 OK"
    data_replies: dict[str, str] = field(default_factory=dict)  # first recipient -> reply after its data
    drop_after_data: int = 0  # this many messages: close before replying to the data
    silent: bool = False  # accept connections, never say a word
    rate: float | None = None  # messages accepted per second; 454 beyond
    keep_data: bool = False


@dataclass
class Accepted:
    sender: str
    recipients: list[str]
    message_id: str
    data: bytes | None
    at: float  # time.monotonic() when accepted


class FakeRelay:
    """Runs in a thread with its own event loop, on 127.0.0.1 and a free port."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self.accepted: list[Accepted] = []
        self.connections = 0
        self.replies: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        self._bucket = (0.0, time.monotonic())
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])

    # ---- control, from the test's thread
    def start(self) -> FakeRelay:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        self._call(self._close())
        self._call(self._end_sessions())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def refuse_connections(self, seconds: float) -> None:
        """Stop listening (connections are refused) for ``seconds``, then listen again."""
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.call_later, seconds, self._relisten)

    def message_ids(self) -> Counter[str]:
        with self._lock:
            return Counter(item.message_id for item in self.accepted)

    def arrival_times(self) -> list[float]:
        with self._lock:
            return [item.at for item in self.accepted]

    def recipient_arrivals(self, start: int = 0) -> list[tuple[str, float]]:
        """(recipient, time.monotonic() of acceptance) for each recipient of the messages accepted
        from the ``start``-th on, in order of acceptance."""
        with self._lock:
            return [(recipient, item.at) for item in self.accepted[start:] for recipient in item.recipients]

    def count(self) -> int:
        with self._lock:
            return len(self.accepted)

    def _call(self, coroutine: object) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)  # type: ignore[arg-type]

    # ---- inside the loop
    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", self.port, reuse_address=True)

    def _relisten(self) -> None:
        self._loop.create_task(self._listen())

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _end_sessions(self) -> None:
        tasks = [task for task in self._sessions if not task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        task.add_done_callback(self._sessions.discard)
        with self._lock:
            self.connections += 1
        behaviour = self.behaviour
        try:
            if behaviour.silent:
                await reader.read()
                return
            self._reply(writer, behaviour.greeting)
            if not behaviour.greeting.startswith("220"):
                await asyncio.sleep(behaviour.rtt)
                return
            await self._commands(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _commands(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sender, recipients = "", []
        while line := await reader.readline():
            verb = line[:4].upper()
            argument = line[4:].strip().decode("utf-8", "replace")
            if verb == b"EHLO" and self.behaviour.ehlo_reply:
                self._reply(writer, self.behaviour.ehlo_reply)
            elif verb == b"HELO":
                self._reply(writer, "250 fake-relay")
            elif verb == b"EHLO":
                extensions = ["PIPELINING"] if self.behaviour.pipelining else []
                extensions += ["8BITMIME", "SMTPUTF8", "SIZE 52428800"]
                self._reply(
                    writer,
                    "\r\n".join(f"250-{e}" for e in ["fake-relay", *extensions[:-1]]) + f"\r\n250 {extensions[-1]}",
                )
            elif verb == b"MAIL" and sender:
                self._reply(writer, "503 5.5.1 Nested MAIL command")  # as Postfix says: RSET first
            elif verb == b"MAIL":
                accepted = self.behaviour.mail_reply.startswith("250")
                sender, recipients = (_address(argument) if accepted else ""), []
                self._reply(writer, self.behaviour.mail_reply)
            elif verb == b"RCPT" and not sender:
                self._reply(writer, "503 5.5.1 Need MAIL first")
            elif verb == b"RCPT":
                address = _address(argument)
                reply = self.behaviour.rcpt_replies.get(address, "250 2.1.5 OK")
                if reply.startswith("250"):
                    recipients.append(address)
                self._reply(writer, reply)
            elif verb == b"DATA":
                if not recipients:
                    self._reply(writer, "554 5.5.1 No valid recipients")
                    continue
                self._reply(writer, "354 End data with <CR><LF>.<CR><LF>")
                data = b""
                while (line := await reader.readline()) != b".\r\n":  # CRLF.CRLF ends the data
                    if not line:
                        return
                    data += line
                if self._take_drop():
                    self._record(sender, recipients, data)  # it arrived; the client cannot know
                    return
                reply = self.behaviour.data_replies.get(recipients[0]) or self._data_reply()
                if reply.startswith("250"):
                    self._record(sender, recipients, data)
                sender, recipients = "", []  # the transaction ends with the reply to its data
                self._reply(writer, reply)
                if reply.startswith("421"):  # closing the session
                    await asyncio.sleep(self.behaviour.rtt)
                    return
            elif verb == b"RSET":
                sender, recipients = "", []
                self._reply(writer, "250 2.0.0 OK")
            elif verb == b"NOOP":
                self._reply(writer, "250 2.0.0 OK")
            elif verb == b"QUIT":
                self._reply(writer, "221 2.0.0 Bye")
                await asyncio.sleep(self.behaviour.rtt)
                return
            else:
                self._reply(writer, "500 5.5.2 Unknown command")

    def _reply(self, writer: asyncio.StreamWriter, reply: str) -> None:
        with self._lock:
            self.replies[reply[:3]] += 1
        payload = (reply + "\r\n").encode()
        # Replies leave one round trip after their command arrived; pipelined replies stay together.
        if self.behaviour.rtt:
            self._loop.call_later(self.behaviour.rtt, _write, writer, payload)
        else:
            writer.write(payload)

    def _take_drop(self) -> bool:
        with self._lock:
            if self.behaviour.drop_after_data > 0:
                self.behaviour.drop_after_data -= 1
                return True
            return False

    def _data_reply(self) -> str:
        rate = self.behaviour.rate
        if rate is None:
            return self.behaviour.data_reply
        tokens, last = self._bucket
        now = time.monotonic()
        tokens = min(rate, tokens + (now - last) * rate)  # a bucket of one second's worth
        if tokens < 1:
            self._bucket = (tokens, now)
            return "454 4.7.0 Throttling failure: Maximum sending rate exceeded"
        self._bucket = (tokens - 1, now)
        return self.behaviour.data_reply

    def _record(self, sender: str, recipients: list[str], data: bytes) -> None:
        match = _MESSAGE_ID.search(data)
        item = Accepted(
            sender,
            recipients,
            match.group(1).decode() if match else "",
            data if self.behaviour.keep_data else None,
            time.monotonic(),
        )
        with self._lock:
            self.accepted.append(item)


def _address(argument: str) -> str:
    start, end = argument.find("<"), argument.find(">")
    return argument[start + 1 : end] if start >= 0 < end else argument.split(":", 1)[-1].strip()


def _write(writer: asyncio.StreamWriter, payload: bytes) -> None:
    if not writer.is_closing():
        writer.write(payload)
