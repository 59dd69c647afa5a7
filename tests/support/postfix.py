"""A private, real Postfix for tests: the service's SMTP relay on 127.0.0.1 and a free port.

Each :class:`PostfixRelay` lives in its own temporary folder (configuration, queue, data, log), so parallel
test runs never share a queue, a pid file or a lock with each other or with the machine's own Postfix. It
accepts mail from 127.0.0.0/8 for any domain and relays it by a transport map to the servers a test names
(``{"example.com": ("127.0.0.1", sink.port)}``). It does no DNS and no local delivery, and it generates
its own DSNs (RFC 3464) for recipients it cannot deliver, which the transport map routes like other mail:
give the envelope sender's domain a route to a bounce receiver.

The master daemon (``master -c <dir>``, not daemonized) runs under a small reaper process of ours: ``stop()``
sends SIGTERM to that one master by pid, the master ends its own process group, the reaper collects every
child and exits, then the folder goes. Needs the Debian ``postfix`` package (``make deploy-tools``) and
root, like Postfix itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from aiosmtpd.smtp import SMTP, Envelope

from tests.support.smtp_sink import SinkHandler, free_port

POSTFIX = Path("/usr/sbin/postfix")
POSTCONF = Path("/usr/sbin/postconf")
POSTQUEUE = Path("/usr/sbin/postqueue")
MAIL_OWNER = "postfix"

Route = tuple[str, int]  # (host, port) of an SMTP server; the host is used literally, never looked up

USER_UNKNOWN = "550 5.1.1 <{address}>: Recipient address rejected: User unknown"
TRY_AGAIN = "450 4.2.0 <{address}>: Recipient address rejected: Try again later"


class PostfixError(RuntimeError):
    """Postfix is missing, its configuration is refused, or it did not start or stop."""


class _PortTaken(PostfixError):
    pass


@dataclass
class RcptReplies(SinkHandler):
    """A :class:`SinkHandler` that answers chosen recipients with a chosen reply at RCPT, e.g.
    ``RcptReplies.rejecting("nobody@example.com")``; ``{address}`` in a reply is replaced by the address."""

    replies: dict[str, str] = field(default_factory=dict)

    @classmethod
    def rejecting(cls, *addresses: str, reply: str = USER_UNKNOWN) -> RcptReplies:
        return cls(replies={address: reply for address in addresses})

    async def handle_RCPT(
        self, server: SMTP, session: object, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self.replies.get(address)
        if reply is not None:
            return reply.format(address=address)
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


def mail_version() -> str:
    """The installed Postfix version, e.g. ``3.7.11``; raises :class:`PostfixError` when it is missing."""
    if not POSTCONF.exists():
        raise PostfixError("Postfix is not installed: run `make deploy-tools`")
    output = subprocess.run([POSTCONF, "-dh", "mail_version"], capture_output=True, text=True, check=True)
    return output.stdout.strip()


class PostfixRelay:
    """One private Postfix instance. ``start()`` returns once port ``port`` on ``host`` greets with 220.

    ``routes`` maps a recipient domain (or a full address) to the SMTP server that gets its mail; mail for
    anything else goes to ``relayhost`` if given, else it bounces (5.4.4). ``queue_lifetime`` is how long a
    temporarily failing recipient is retried (every second or two) before Postfix gives up and returns a
    failed DSN; ``"0"`` means one attempt. ``delay_warning`` (e.g. ``"2s"``) enables "delayed" DSNs.
    ``settings`` adds or overrides main.cf parameters.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        routes: Mapping[str, Route] | None = None,
        *,
        relayhost: Route | None = None,
        queue_lifetime: str = "10s",
        delay_warning: str | None = None,
        hostname: str = "relay.test",
        settings: Mapping[str, str] | None = None,
        lifetime_limit: int = 3600,
    ) -> None:
        self.port = free_port()
        self.hostname = hostname
        self.relayhost = relayhost
        self.queue_lifetime = queue_lifetime
        self.delay_warning = delay_warning
        self.settings = dict(settings or {})
        self.lifetime_limit = lifetime_limit  # the master ends itself after this, should a test run die hard
        self.routes: dict[str, Route] = dict(routes or {})
        self.directory: Path | None = None
        self._reaper: subprocess.Popen[bytes] | None = None  # the master's parent, see _REAPER
        self._finalizer: weakref.finalize[..., PostfixRelay] | None = None

    # ---- paths inside the instance's folder
    @property
    def config_directory(self) -> Path:
        return self._root / "conf"

    @property
    def queue_directory(self) -> Path:
        return self._root / "queue"

    @property
    def log_file(self) -> Path:
        return self._root / "maillog"

    @property
    def _root(self) -> Path:
        if self.directory is None:
            raise PostfixError("the relay is not started")
        return self.directory

    # ---- life cycle
    def start(self, timeout: float = 30.0) -> PostfixRelay:
        if self.directory is not None:
            raise PostfixError("the relay is already started")
        mail_version()  # a clear failure, not a skip, when Postfix is missing
        for attempt in range(1, 4):
            try:
                self._start(timeout)
                return self
            except _PortTaken:
                self.stop()
                if attempt == 3:
                    raise
                self.port = free_port()  # someone took the port between free_port() and the master's bind
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="postfix-relay-"))
        # Should the test process end without stop(), the interpreter's exit still cleans up.
        self._finalizer = weakref.finalize(self, _cleanup, self.directory, None)
        self._write_files()
        self._postfix("check")  # creates the queue's folders with Postfix's owners and modes, and checks
        reaper = self._root / "reaper.py"
        reaper.write_text(_REAPER)
        # -c: our configuration only. No -d: the master becomes its own session and process group leader, so
        # that SIGTERM to it ends every Postfix process of this instance and no other (-d would keep it in
        # ours). -e: should the whole test run be killed, even the reaper, the master still ends itself.
        master = [self._daemon_directory() / "master", "-c", self.config_directory, "-e", self.lifetime_limit]
        with (self._root / "master.out").open("wb") as output:
            self._reaper = subprocess.Popen(
                [sys.executable, reaper, *map(str, master)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=_environment(self.config_directory),
            )
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _cleanup, self.directory, self._reaper)
        self._await_greeting(timeout)
        # The master binds with SO_REUSEPORT, so a second root Postfix on the same port would share it silently.
        if len(_listeners(self.port)) != 1:
            raise _PortTaken(f"port {self.port} has more than one listener")

    def stop(self, timeout: float = 15.0) -> None:
        """Ends this instance's processes (SIGTERM to its master, by pid) and removes its folder. Idempotent."""
        reaper, self._reaper = self._reaper, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self.directory is not None:
            directory, self.directory = self.directory, None
            _cleanup(directory, reaper, timeout)

    def __enter__(self) -> PostfixRelay:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._reaper is not None and self._reaper.poll() is None

    def pids(self) -> list[int]:
        """The processes of this instance: the reaper, the master and its children."""
        return instance_pids(self.config_directory) if self.directory is not None else []

    # ---- while it runs
    def configure(self, routes: Mapping[str, Route]) -> None:
        """Replaces the transport map. While running, Postfix reloads (``postfix reload``): mail that
        arrives after the reload takes effect follows the new routes; allow it a moment."""
        self.routes = dict(routes)
        if self.directory is not None:
            self._write_transport()
            if self.running:
                self._postfix("reload")

    def flush(self) -> None:
        """Retries deferred mail now (``postqueue -f``) instead of at its next scheduled attempt."""
        self._run([POSTQUEUE, "-c", str(self.config_directory), "-f"])

    def queue(self) -> list[dict[str, object]]:
        """The queued messages, as ``postqueue -j`` describes them (one dict per message)."""
        output = self._run([POSTQUEUE, "-c", str(self.config_directory), "-j"])
        return [json.loads(line) for line in output.splitlines() if line.strip()]

    def log(self) -> str:
        """Postfix's log so far: its maillog_file, after anything the reaper or the master printed. (The master
        sends its own start-up errors to syslog, which this misses: start() names the usual one, a taken port.)"""
        if self.directory is None:
            return ""
        parts = []
        for name in ("master.out", "maillog"):
            with contextlib.suppress(FileNotFoundError):
                text = (self.directory / name).read_text(errors="replace")
                if text:
                    parts.append(text)
        return "".join(parts)

    # ---- internals
    def _write_files(self) -> None:
        root = self._root
        root.chmod(0o755)  # postfix-script and the unprivileged daemons must reach the queue
        self.config_directory.mkdir()
        self.queue_directory.mkdir()
        data = root / "data"
        data.mkdir()
        shutil.chown(data, MAIL_OWNER, MAIL_OWNER)
        (self.config_directory / "main.cf").write_text(self._main_cf())
        (self.config_directory / "master.cf").write_text(self._master_cf())
        self._write_transport()

    def _write_transport(self) -> None:
        # texthash: is read as plain text when a process starts: no postmap, no .db files
        lines = [f"{key} smtp:[{host}]:{port}\n" for key, (host, port) in self.routes.items()]
        path = self.config_directory / "transport"
        temporary = path.with_suffix(".new")
        temporary.write_text("".join(lines))
        temporary.replace(path)

    def _main_cf(self) -> str:
        root = self._root
        parameters = {
            "compatibility_level": "3.6",
            "config_directory": str(self.config_directory),
            "queue_directory": str(self.queue_directory),
            "data_directory": str(root / "data"),
            "meta_directory": "/etc/postfix",  # postfix-files and dynamicmaps.cf of the package, read only
            "mail_owner": MAIL_OWNER,
            "setgid_group": "postdrop",
            "syslog_name": f"postfix-relay-{self.port}",
            # Logging to a file of our own (postlogd, Postfix 3.4+): no syslog in containers, and a failing
            # test can show the log.
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": str(root),
            "myhostname": self.hostname,
            "mydomain": self.hostname,
            "myorigin": "$myhostname",
            # SMTP on loopback only, IPv4 only
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "smtpd_recipient_restrictions": "permit_mynetworks, reject",
            "smtpd_peername_lookup": "no",  # no reverse DNS for 127.0.0.1
            "smtpd_banner": f"$myhostname ESMTP {self._root.name}",  # start() knows our greeting from another's
            # Nothing is delivered here: every domain is relayed; unrouted mail bounces instead of
            # looking for an MX.
            "mydestination": "",
            "relay_domains": "",
            "local_recipient_maps": "",
            "local_transport": "error:5.1.1 no local delivery in the test relay",
            "alias_maps": "",
            "alias_database": "",
            "transport_maps": f"texthash:{self.config_directory / 'transport'}",
            "default_transport": "smtp" if self.relayhost else "error:5.4.4 no route in the test relay",
            "relayhost": f"[{self.relayhost[0]}]:{self.relayhost[1]}" if self.relayhost else "",
            # No DNS at all: next hops are [ip]:port literals; hostnames (if any) come from /etc/hosts.
            "smtp_dns_support_level": "disabled",
            "smtp_host_lookup": "native",
            "lmtp_host_lookup": "native",
            "smtp_tls_security_level": "none",
            # One connection per delivery: a sink's connection count stays predictable.
            "smtp_connection_cache_on_demand": "no",
            "smtp_connect_timeout": "5s",
            "smtp_helo_timeout": "10s",
            "smtp_mail_timeout": "10s",
            "smtp_rcpt_timeout": "10s",
            "smtp_data_init_timeout": "10s",
            "smtp_data_xfer_timeout": "20s",
            "smtp_data_done_timeout": "20s",
            # Fast retries, and a short life for mail that keeps failing temporarily: a 4xx recipient becomes
            # a failed DSN after queue_lifetime.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "maximal_queue_lifetime": self.queue_lifetime,
            "bounce_queue_lifetime": self.queue_lifetime,
            "delay_warning_time": self.delay_warning or "0",
            "in_flow_delay": "0",
            # No copies of bounces or errors to a postmaster who does not exist here.
            "notify_classes": "",
            "biff": "no",
            "append_dot_mydomain": "no",
            "readme_directory": "no",
        }
        parameters.update(self.settings)
        return "".join(f"{name} = {value}\n" for name, value in parameters.items())

    def _master_cf(self) -> str:
        # chroot "n" everywhere: the queue is in /tmp, and a chroot would need copies of /etc files.
        # service   type        private unpriv chroot wakeup maxproc command
        services = [
            (f"{self.host}:{self.port}", "inet", "n", "-", "n", "-", "-", "smtpd"),
            ("pickup", "unix", "n", "-", "n", "60", "1", "pickup"),
            ("cleanup", "unix", "n", "-", "n", "-", "0", "cleanup"),
            ("qmgr", "unix", "n", "-", "n", "300", "1", "qmgr"),
            ("rewrite", "unix", "-", "-", "n", "-", "-", "trivial-rewrite"),
            ("bounce", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("defer", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("trace", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("verify", "unix", "-", "-", "n", "-", "1", "verify"),
            ("flush", "unix", "n", "-", "n", "1000?", "0", "flush"),
            ("proxymap", "unix", "-", "-", "n", "-", "-", "proxymap"),
            ("proxywrite", "unix", "-", "-", "n", "-", "1", "proxymap"),
            ("smtp", "unix", "-", "-", "n", "-", "-", "smtp"),
            ("relay", "unix", "-", "-", "n", "-", "-", "smtp"),
            ("showq", "unix", "n", "-", "n", "-", "-", "showq"),
            ("error", "unix", "-", "-", "n", "-", "-", "error"),
            ("retry", "unix", "-", "-", "n", "-", "-", "error"),
            ("discard", "unix", "-", "-", "n", "-", "-", "discard"),
            ("anvil", "unix", "-", "-", "n", "-", "1", "anvil"),
            ("scache", "unix", "-", "-", "n", "-", "1", "scache"),
            ("postlog", "unix-dgram", "n", "-", "n", "-", "1", "postlogd"),
        ]
        return "".join(" ".join(f"{column:<10}" for column in service).rstrip() + "\n" for service in services)

    def _daemon_directory(self) -> Path:
        return Path(self._run([POSTCONF, "-dh", "daemon_directory"]).strip())

    def _postfix(self, command: str) -> str:
        return self._run([POSTFIX, "-c", str(self.config_directory), command])

    def _run(self, command: list[str | Path]) -> str:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=_environment(self.config_directory) if self.directory else None,
            timeout=60,
        )
        if done.returncode != 0:
            raise PostfixError(
                f"{' '.join(map(str, command))} failed ({done.returncode}):\n{done.stdout}{done.stderr}\n{self.log()}"
            )
        return done.stdout + done.stderr

    def _await_greeting(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: str = ""
        while time.monotonic() < deadline:
            assert self._reaper is not None
            if self._reaper.poll() is not None:
                # The master logs its start-up errors to syslog, not to maillog_file: say the likely one.
                if _listeners(self.port):
                    raise _PortTaken(f"port {self.port} is taken")
                raise PostfixError(f"the Postfix master exited ({self._reaper.returncode}):\n{self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=2) as connection:
                    connection.settimeout(5)
                    greeting = connection.recv(512).decode(errors="replace")
                    connection.sendall(b"QUIT\r\n")
                    if greeting.startswith("220") and self._root.name in greeting:
                        return
                    if greeting.startswith("220"):
                        raise _PortTaken(f"another server greets on port {self.port}: {greeting.strip()}")
                    last = greeting
            except OSError as error:
                last = str(error)
            time.sleep(0.05)
        raise PostfixError(f"Postfix did not greet on {self.host}:{self.port} in {timeout}s ({last}):\n{self.log()}")


# The master's parent: a child subreaper (prctl), so the master's children, orphaned when the master exits
# first, are reaped here rather than left as zombies of init; it exits once every one of them has, so that
# waiting for it means the instance is gone. SIGTERM is passed to the master, which ends its process group;
# 10 s later the group gets SIGKILL. Should the test process (its parent) die, it stops the master itself and
# removes the folder.
_REAPER = """
import ctypes, os, shutil, signal, sys, time
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
parent = os.getppid()
orphaned = False
master_status = None
stopping = None
def stop():
    global stopping
    if stopping is None:
        stopping = time.monotonic()
        if master_status is None:  # not reaped yet, so the pid is still the master's
            os.kill(master, signal.SIGTERM)
signal.signal(signal.SIGTERM, lambda *_: stop())  # set before the fork: no window where SIGTERM kills us
master = os.fork()
if master == 0:
    os.execv(sys.argv[1], sys.argv[1:])
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the test run: the harness stops us in order
while True:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # no stop() between reaping and noting it
    try:
        pid, code = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        break
    if pid == master:
        master_status = os.waitstatus_to_exitcode(code)
        stopping = stopping or time.monotonic()  # its children notice and exit on their own
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    if pid == 0:
        if os.getppid() != parent:
            orphaned = True
            stop()
        if stopping is not None and time.monotonic() > stopping + 10:
            try:  # children of ours remain, so the group id is still the master's
                os.killpg(master, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
if orphaned:  # nobody is left to remove the instance's folder (where this script is)
    shutil.rmtree(os.path.dirname(os.path.abspath(sys.argv[0])), ignore_errors=True)
sys.exit(1 if master_status is None else master_status)
"""


def _listeners(port: int) -> set[str]:
    """Inodes of the TCP sockets listening on 127.0.0.1 or 0.0.0.0 and ``port`` (any process)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and address in (f"0100007F:{port:04X}", f"00000000:{port:04X}"):
            inodes.add(inode)
    return inodes


def _environment(config_directory: Path) -> dict[str, str]:
    # MAIL_CONFIG reaches every process of the instance; Postfix imports only a few variables anyway.
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "MAIL_CONFIG": str(config_directory)}


def instance_pids(config_directory: Path) -> list[int]:
    """Processes whose environment names this instance's configuration: ours, and only ours."""
    marker = f"MAIL_CONFIG={config_directory}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
    return pids


def _cleanup(directory: Path, reaper: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    config_directory = directory / "conf"
    if reaper is not None and reaper.poll() is None:
        reaper.send_signal(signal.SIGTERM)  # passed to the master; the reaper exits once every process has
        try:
            reaper.wait(timeout)
        except subprocess.TimeoutExpired:
            reaper.kill()
            reaper.wait(5)
    # Should anything of this instance still run (the reaper was killed), end it, by pid.
    for pid in instance_pids(config_directory):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(directory, ignore_errors=True)
