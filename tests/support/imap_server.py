"""A real IMAP server for tests: a private Dovecot on a loopback port, with one user and a Maildir INBOX.

Each ``DovecotServer`` writes its own dovecot.conf into a fresh temporary folder (sockets, state, log
and mail all live there), runs ``dovecot -F`` as a child process in a process group of its own, and
removes everything at ``stop()``. Nothing of the system's Dovecot (/etc/dovecot, port 143) is used.

    with DovecotServer("bounces", "p@ss word") as server:
        server.deliver(b"From: a@example.com\\r\\nSubject: x\\r\\n\\r\\nbody\\r\\n")
        ...  # imaplib.IMAP4(server.host, server.port), or parse server.url

Dovecot never lets mail be accessed as root, so when the tests run as root the mailbox belongs to
``nobody``, Dovecot's own processes run as the ``dovecot`` and ``dovenull`` users its package creates,
and the folder is traversable (0711) so that they reach their files. As another user, every process
runs as that user.
"""

from __future__ import annotations

import contextlib
import grp
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import trustme

from tests.support.smtp_sink import free_port

HOST = "127.0.0.1"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_deliveries = itertools.count()


def dovecot_binary() -> str:
    """The dovecot executable; /usr/sbin is not on a non-root PATH."""
    found = shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise RuntimeError("dovecot is not installed: `make deploy-tools` installs Debian's dovecot-imapd")
    return found


class DovecotServer:
    """Dovecot serving IMAP for one user (``user``, ``password``) on 127.0.0.1 only.

    ``port`` speaks plain IMAP (``ssl = no``, plaintext LOGIN allowed). With ``tls=True`` the server
    has ``ssl = required``, a certificate for 127.0.0.1 and localhost from a trustme CA (``ca``),
    STARTTLS on ``port`` and implicit TLS on ``ssl_port``; Dovecot counts loopback connections as
    secured, so LOGIN without TLS still works on ``port`` from 127.0.0.1.
    """

    def __init__(self, user: str = "bounces", password: str = "bounce-mailbox-secret", *, tls: bool = False) -> None:
        if not _USER_NAME.fullmatch(user):
            raise ValueError(f"user {user!r}: letters, digits, . _ - only (it names the Maildir folder)")
        if any(character in password for character in ":\r\n\0"):
            raise ValueError("password: no colon, CR, LF or NUL (passwd-file separates its fields with ':')")
        self.user = user
        self.password = password
        self.tls = tls
        self.host = HOST
        self.port = 0
        self.ssl_port: int | None = None
        self.ca: trustme.CA | None = trustme.CA() if tls else None
        self.root: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._mail_owner = _mail_owner()

    # Paths inside the temporary folder -------------------------------------------------------------

    def _path(self, name: str) -> Path:
        if self.root is None:
            raise RuntimeError("the server is not started")
        return self.root / name

    @property
    def config_path(self) -> Path:
        return self._path("dovecot.conf")

    @property
    def log_path(self) -> Path:
        return self._path("dovecot.log")

    @property
    def maildir(self) -> Path:
        """The user's INBOX, a Maildir (cur/, new/, tmp/)."""
        return self._path("mail") / self.user

    # Addresses -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """imap://user:password@127.0.0.1:<port>/INBOX, as BOUNCE_IMAP_URL takes it."""
        return self._url("imap", self.port)

    @property
    def imaps_url(self) -> str:
        """imaps://user:password@127.0.0.1:<ssl_port>/INBOX (``tls=True`` only)."""
        if self.ssl_port is None:
            raise RuntimeError("imaps_url needs DovecotServer(tls=True), started")
        return self._url("imaps", self.ssl_port)

    def _url(self, scheme: str, port: int) -> str:
        if not port:
            raise RuntimeError("the server is not started")
        return f"{scheme}://{quote(self.user, safe='')}:{quote(self.password, safe='')}@{self.host}:{port}/INBOX"

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only this server's CA and checks the host name (``tls=True``)."""
        if self.ca is None:
            raise RuntimeError("client_context needs DovecotServer(tls=True)")
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    # Life cycle ------------------------------------------------------------------------------------

    def start(self) -> DovecotServer:
        binary = dovecot_binary()
        self.root = Path(tempfile.mkdtemp(prefix="dovecot-"))
        self.root.chmod(0o711)  # Dovecot's auth (user dovecot) opens the passwd-file, imap (nobody) the mail
        try:
            self._prepare()
            for attempt in range(3):  # free_port() can race with another process taking the port
                self.port = free_port()
                self.ssl_port = free_port() if self.tls else None
                self.config_path.write_text(self._config())
                try:
                    self._spawn(binary)
                    return self
                except _PortTaken:
                    if attempt == 2:
                        raise
        except BaseException:
            self.stop()
            raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """End this server's processes (its own process group only) and remove its folder."""
        process, self._process = self._process, None
        if process is not None:
            _end(process)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
        self.port, self.ssl_port = 0, None

    def __enter__(self) -> DovecotServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """The Dovecot master's pid (also its process group's id), while running."""
        return self._process.pid if self._process is not None else None

    # Mail and log ----------------------------------------------------------------------------------

    def deliver(self, raw: bytes) -> Path:
        """Put ``raw`` into the INBOX as a new, unseen message; the file it became.

        Done the way an MTA delivers to a Maildir: written under tmp/, then renamed into new/ under a
        unique name, so Dovecot never sees half a message. That needs no IMAP login (nothing of the
        test's own IMAP conversation is used up or changed), and Dovecot rescans new/ whenever its
        mtime is recent, so the message is there at the next SELECT, NOOP or SEARCH. FETCH BODY[]
        gives back these exact bytes when their lines end in CRLF (Dovecot serves bare LF as CRLF).
        """
        seconds, fraction = divmod(time.time(), 1)
        host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")
        name = f"{int(seconds)}.M{int(fraction * 1e6)}P{os.getpid()}Q{next(_deliveries)}.{host}"
        staged, delivered = self.maildir / "tmp" / name, self.maildir / "new" / name
        with open(staged, "xb") as file:
            file.write(raw)
            file.flush()
            os.fsync(file.fileno())
        uid, gid = self._mail_owner[1:]
        if os.geteuid() == 0:
            os.chown(staged, uid, gid)  # the imap process (mail_uid) renames it into cur/ and sets flags
        os.rename(staged, delivered)
        return delivered

    def log(self) -> str:
        """Dovecot's log so far (its log_path: every process, auth and imap included)."""
        try:
            return self.log_path.read_text(errors="replace")
        except (FileNotFoundError, RuntimeError):
            return ""

    # Internals -------------------------------------------------------------------------------------

    def _prepare(self) -> None:
        folders = [self.maildir.parent, self.maildir, *(self.maildir / sub for sub in ("cur", "new", "tmp"))]
        for folder in folders:
            folder.mkdir()
            if os.geteuid() == 0:
                os.chown(folder, *self._mail_owner[1:])  # imap runs as mail_uid and writes its index here
        # {PLAIN}: the test's password verbatim; uid/gid/home are empty, mail_uid and mail_gid apply.
        passwd = self._path("passwd")
        passwd.write_text(f"{self.user}:{{PLAIN}}{self.password}::::::\n")
        passwd.chmod(0o644)
        if self.ca is not None:
            leaf = self.ca.issue_cert(HOST, "localhost")
            leaf.private_key_pem.write_to_path(str(self._path("key.pem")))
            leaf.cert_chain_pems[0].write_to_path(str(self._path("cert.pem")))
            for extra in leaf.cert_chain_pems[1:]:
                extra.write_to_path(str(self._path("cert.pem")), append=True)

    def _config(self) -> str:
        mail_name, uid, gid = self._mail_owner
        root = self._path("")
        if os.geteuid() == 0:
            internal_user, internal_group, login_user = "dovecot", "dovecot", "dovenull"  # dovecot-core's
        else:  # an unprivileged Dovecot can neither change users nor give its sockets to another group
            internal_user, internal_group, login_user = mail_name, grp.getgrgid(gid).gr_name, mail_name
        if self.tls:
            ssl_settings = f"ssl = required\nssl_cert = <{root}/cert.pem\nssl_key = <{root}/key.pem\n"
            imaps_port = self.ssl_port
        else:
            ssl_settings = "ssl = no\n"
            imaps_port = 0
        chroot = "" if os.geteuid() == 0 else "  chroot =\n"  # imap-login's and anvil's chroot need root
        return f"""# Written by tests/support/imap_server.py: a private Dovecot, nothing of /etc/dovecot.
base_dir = {root}/run
state_dir = {root}/state
instance_name = {root.name}
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
auth_verbose = yes
protocols = imap
listen = {HOST}
{ssl_settings}disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
last_valid_gid = {gid}
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = {root}/passwd
}}
service imap-login {{
{chroot}  inet_listener imap {{
    address = {HOST}
    port = {self.port}
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {imaps_port}
    ssl = yes
  }}
}}
service anvil {{
{chroot}  # No per-IP auth penalty: after a failed login, every login from 127.0.0.1 would wait 2 to 15 s.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""

    def _spawn(self, binary: str) -> None:
        environment = {key: value for key, value in os.environ.items() if not key.startswith("LISTEN_")}
        with open(self._path("stderr.log"), "wb") as stderr:  # what -F prints before the log is open
            self._process = subprocess.Popen(
                [binary, "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,  # a process group of its own: stop() ends exactly it
                env=environment,  # no systemd socket activation inherited
            )
        deadline = time.monotonic() + START_TIMEOUT
        ports = [(self.port, False)] + ([(self.ssl_port, True)] if self.ssl_port else [])
        for port, implicit_tls in ports:
            while not self._greets(port, implicit_tls):
                if self._process.poll() is not None:
                    output = self._path("stderr.log").read_text(errors="replace") + self.log()
                    _end(self._process)  # children the master had started, if any
                    self._process = None
                    if "Address already in use" in output:
                        raise _PortTaken(output)
                    raise RuntimeError(f"dovecot exited at start:\n{output}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dovecot did not greet on {HOST}:{port} in {START_TIMEOUT} s:\n{self.log()}")
                time.sleep(0.02)

    def _greets(self, port: int, implicit_tls: bool) -> bool:
        """Whether ``port`` answers ``* OK``: the port is bound before imap-login can serve it."""
        try:
            with socket.create_connection((HOST, port), timeout=2) as connection:
                if implicit_tls:
                    with self.client_context().wrap_socket(connection, server_hostname=HOST) as secured:
                        return secured.recv(1024).startswith(b"* OK")
                return connection.recv(1024).startswith(b"* OK")
        except OSError:
            return False


class _PortTaken(RuntimeError):
    pass


def _mail_owner() -> tuple[str, int, int]:
    """Who owns the mail: ``nobody`` for root (Dovecot refuses mail access as root), else oneself."""
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        return nobody.pw_name, nobody.pw_uid, grp.getgrgid(nobody.pw_gid).gr_gid
    me = pwd.getpwuid(os.geteuid())
    return me.pw_name, me.pw_uid, os.getegid()


def _end(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the whole group at once, then SIGKILL to whatever is left of it.

    Only the master would end its children too, but it then waits about a second for its log process;
    the group at once takes milliseconds.
    """
    group = process.pid  # start_new_session: the group's id is the master's pid
    if process.poll() is None:
        _signal_group(group, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            _signal_group(group, signal.SIGKILL)
            process.wait(STOP_TIMEOUT)
    _signal_group(group, signal.SIGKILL)  # a straggler; the group's id stays ours while one member lives
    # Children that outlive the master become init's, which reaps them when it gets to it; wait until
    # none of them runs any more (an unreaped zombie may still show in ps as <defunct> for a moment).
    deadline = time.monotonic() + STOP_TIMEOUT
    while live_members(group) and time.monotonic() < deadline:
        time.sleep(0.01)


def live_members(group: int) -> list[int]:
    """The pids of process group ``group`` that are not zombies (read from /proc: Linux only)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        state, _, pgrp = stat.rpartition(")")[2].split()[:3]  # after "pid (comm)": state, ppid, pgrp
        if int(pgrp) == group and state != "Z":
            members.append(int(entry.name))
    return members


def _signal_group(group: int, number: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is gone already
        os.killpg(group, number)
