"""``email-service send`` run as a command against the real service: the HTTP API, a Celery worker
process on Redis, PostgreSQL, and an aiosmtpd relay that refuses chosen recipients."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from email_service.client import EmailServiceClient
from tests.support.smtp_sink import Received, SMTPSink, free_port
from tests.support.stack import ApiServer, client_stack

GREETING = (
    "Subject: {{ subject }}\nContent-Type: text/plain\n\n"
    "Hello {{ name }} from {{ city }}, your code is {{ code }}.\n{{ content }}\n"
)
JOB_ID = re.compile(r"^[0-9a-f-]{36}$")


@pytest.fixture(scope="module")
def stack(postgres_url: str, redis_prefix: str, module_sink: SMTPSink, tmp_path_factory) -> Iterator[ApiServer]:
    folder = Path(tmp_path_factory.mktemp("cli-send"))
    with client_stack(postgres_url, redis_prefix, module_sink.port, folder, {"greeting": GREETING}) as api:
        STACK_KEY["key"] = api.api_key
        yield api


@pytest.fixture
def client(stack: ApiServer) -> Iterator[EmailServiceClient]:
    with EmailServiceClient(stack.url, api_key=stack.api_key, timeout=15) as service:
        yield service


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "email_service", "send", *args]


# The API key of the module's stack: every command runs with it, as a configured caller would.
STACK_KEY: dict[str, str] = {}


def environment(**extra: str) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("EMAIL_SERVICE_")}
    return {**inherited, "EMAIL_SERVICE_API_KEY": STACK_KEY.get("key", ""), **extra}


def send(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args), input=stdin, capture_output=True, text=True, env=environment(**env), timeout=60
    )


def tagged(*names: str) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"{name}-{tag}@example.com" for name in names]


def received(module_sink: SMTPSink, address: str) -> list[Received]:
    return [item for item in module_sink.handler.messages() if item.recipients == [address]]


def text(message: EmailMessage) -> str:
    """The plain-text body, with the line breaks it had before travelling as CRLF."""
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content()).replace("\r\n", "\n")


def test_csv_recipients_get_their_own_variables_and_the_summary_says_all_sent(
    stack: ApiServer, module_sink: SMTPSink, tmp_path: Path
):
    ann, bob = tagged("ann", "bob")
    path = tmp_path / "people.csv"
    path.write_text(f'\ufeffemail,name,code,city\n{ann},Ann,011,"Hawkins, IN"\n\n{bob},Bob,022,Chicago\n')
    result = send(
        str(path), "--subject", "Codes", "--content", "See you.", "--template", "greeting", "--url", stack.url
    )
    assert result.returncode == 0, result.stderr
    job_id, *summary = result.stdout.splitlines()
    assert JOB_ID.match(job_id)
    assert summary[0] == f"job {job_id} completed: 2 recipient(s)"
    assert re.search(r"^  sent +2$", result.stdout, re.MULTILINE)
    assert "100%" in result.stderr and "2/2 completed" in result.stderr and "\r" not in result.stderr
    ann_message = received(module_sink, ann)[0].message
    assert ann_message["Subject"] == "Codes"
    assert text(ann_message).startswith("Hello Ann from Hawkins, IN, your code is 011.\nSee you.")
    assert text(received(module_sink, bob)[0].message).startswith("Hello Bob from Chicago, your code is 022.")


def test_refused_recipients_are_listed_and_the_exit_status_is_3(
    stack: ApiServer, module_sink: SMTPSink, tmp_path: Path
):
    ok1, ok2, gone1, gone2 = tagged("ok1", "ok2", "gone1", "gone2")
    module_sink.handler.reject_rcpt.update({gone1, gone2})
    path = tmp_path / "list.json"
    path.write_text(json.dumps({"recipients": [ok1, {"email": gone1, "name": "Gone"}, ok2, gone2]}))
    result = send(str(path), "--subject", "s", "--url", stack.url)
    assert result.returncode == 3, result.stderr
    assert re.search(r"^  sent +2$", result.stdout, re.MULTILINE)
    assert re.search(r"^  failed +2$", result.stdout, re.MULTILINE)
    assert "not sent (2):" in result.stdout
    for address in (gone1, gone2):
        assert re.search(rf"^  {re.escape(address)}  failed +550  5\.1\.1 No such user here$", result.stdout, re.M)

    # New addresses: the first two bounced, so they are suppressed from now on.
    ok3, gone3, gone4 = tagged("ok3", "gone3", "gone4")
    module_sink.handler.reject_rcpt.update({gone3, gone4})
    stdin = json.dumps([gone3, ok3, gone4])
    limited = send("-", "--subject", "s", "--show-failures", "1", "--url", stack.url, stdin=stdin)
    assert limited.returncode == 3, limited.stderr
    assert "not sent (2, first 1):" in limited.stdout and "... and 1 more:" in limited.stdout
    assert limited.stdout.count("No such user") == 1


def test_a_request_the_service_refuses_exits_1_and_names_the_csv_line(stack: ApiServer, tmp_path: Path):
    path = tmp_path / "people.csv"
    path.write_text("email,name\nfine@example.com,Fine\nnot-an-address,Broken\n")
    result = send(str(path), "--subject", "s", "--url", stack.url)
    assert result.returncode == 1
    assert "the service refused the job: 422 validation_error" in result.stderr
    assert f"recipients[1] ({path}, line 3): " in result.stderr
    assert result.stdout == ""


def test_an_unreachable_service_exits_1(tmp_path: Path):
    path = tmp_path / "list.json"
    path.write_text('["a@example.com"]')
    result = send(str(path), "--subject", "s", "--url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "could not reach the service" in result.stderr and "Connection refused" in result.stderr


BAD_INPUTS = [
    ("list.csv", "name,code\nAnn,1\n", [], "list.csv, line 1: the header has no 'email' column"),
    ("list.csv", "email,email\na@example.com,b@example.com\n", [], "line 1: column 'email' appears twice"),
    ("list.csv", "email,name\na@example.com,A\n,B\n", [], "list.csv, line 3: no address in the 'email' column"),
    ("list.csv", "email,name\na@example.com,A,extra\n", [], "list.csv, line 2: 3 cells but 2 columns"),
    ("list.csv", "email,name\n", [], "list.csv: no recipients below the header"),
    ("list.csv", b"email\n\xff@example.com\n", [], "list.csv: not UTF-8 text"),
    ("list.json", '[\n  "a@example.com",\n  oops\n]', [], "list.json, line 3 column 3: invalid JSON"),
    ("list.json", '{"recipients": [{"email": "a@example.com", "nmae": "A"}]}', [], "recipients[0]: unknown field"),
    ("list.json", '["a@example.com", 42]', [], "list.json, recipients[1]: a recipient is an address string"),
    ("list.json", "[]", [], "list.json: no recipients"),
    ("list.txt", "a@example.com", [], "must be a .csv or .json file"),
    ("missing.csv", None, [], "missing.csv: No such file or directory"),
    ("list.csv", "email\na@example.com\n", ["--var", "novalue"], "--var 'novalue': expected KEY=VALUE"),
    ("list.csv", "email\na@example.com\n", ["--content", "x", "--content-file", "{file}"], "not both"),
]


@pytest.mark.parametrize(("name", "content", "options", "message"), BAD_INPUTS)
def test_bad_input_exits_2_before_anything_is_sent(
    client: EmailServiceClient, tmp_path: Path, name: str, content: str | bytes | None, options: list[str], message: str
):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    newest = client.list_jobs(limit=1)["items"]
    options = [option.replace("{file}", str(path)) for option in options]
    result = send(str(path), "--subject", "s", *options, "--url", client.base_url)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert client.list_jobs(limit=1)["items"][:1] == newest[:1], "nothing was queued"


def test_no_wait_prints_the_job_id_and_exits(client: EmailServiceClient, tmp_path: Path):
    path = tmp_path / "list.json"
    path.write_text(json.dumps(tagged("a", "b")))
    result = send(str(path), "--subject", "s", "--no-wait", EMAIL_SERVICE_URL=client.base_url)
    assert result.returncode == 0, result.stderr
    assert JOB_ID.match(result.stdout.strip())
    assert client.get_job(result.stdout.strip())["total"] == 2
    assert f"job {result.stdout.strip()} queued: 2 recipient(s)" in result.stderr


def _interruptible() -> None:
    """In the command's process before it starts: Ctrl-C delivered as a terminal delivers it. A process inherits
    an ignored SIGINT, and a test runner's process may ignore it (one xdist worker of the suite did, now and
    then): the command's Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_ctrl_c_stops_following_and_the_job_goes_on(client: EmailServiceClient, module_sink: SMTPSink, tmp_path: Path):
    path = tmp_path / "list.json"
    path.write_text(json.dumps([f"slow{i}-{uuid.uuid4().hex[:6]}@example.com" for i in range(150)]))
    out, err = tmp_path / "out", tmp_path / "err"
    module_sink.handler.delay = 0.1  # about 40 messages a second: the job lasts several seconds
    try:
        with out.open("w") as stdout, err.open("w") as stderr:
            process = subprocess.Popen(
                command(str(path), "--subject", "s", "--url", client.base_url),
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                env=environment(),
                preexec_fn=_interruptible,
            )
            deadline = time.monotonic() + 20
            while "[" not in err.read_text():  # the first progress line: it is following the job
                assert process.poll() is None and time.monotonic() < deadline, err.read_text()
                time.sleep(0.05)
            process.send_signal(signal.SIGINT)  # what Ctrl-C delivers
            code = process.wait(timeout=10)
        job_id = out.read_text().strip()
        assert code == 130
        assert f"stopped following; job {job_id} goes on" in err.read_text()
        job = client.get_job(job_id)
        assert job["status"] in ("queued", "sending") and job["current"] < 150
    finally:
        module_sink.handler.delay = 0.0
    client.cancel(job_id)


def test_progress_bar_redraws_in_place_on_a_terminal(stack: ApiServer, tmp_path: Path):
    path = tmp_path / "list.json"
    path.write_text(json.dumps(tagged("tty1", "tty2", "tty3")))
    terminal, child_side = pty.openpty()
    process = subprocess.Popen(
        command(str(path), "--subject", "s", "--url", stack.url),
        stdout=subprocess.PIPE,
        stderr=child_side,
        stdin=subprocess.DEVNULL,
        env=environment(),
    )
    os.close(child_side)
    screen = b""
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            if select.select([terminal], [], [], 0.5)[0]:
                try:
                    chunk = os.read(terminal, 4096)
                except OSError:  # EIO: the command ended and closed its terminal
                    break
                if not chunk:
                    break
                screen += chunk
        assert process.wait(timeout=10) == 0
    finally:
        os.close(terminal)
        if process.poll() is None:
            process.kill()
    assert b"\r[" in screen and b"100% 3/3 completed" in screen
    assert process.stdout is not None and b"completed: 3 recipient(s)" in process.stdout.read()
    process.stdout.close()


# ---- options that need fields the server adds (variables, attachments, reply-to, tags, idempotency, send_at)


def test_every_option_reaches_the_message_and_a_repeated_key_answers_the_same_job(
    client: EmailServiceClient, module_sink: SMTPSink, tmp_path: Path
):
    [ann] = tagged("ann")
    (tmp_path / "people.csv").write_text(f"email,name\n{ann},Ann\n")
    (tmp_path / "content.txt").write_text("From the file.")
    (tmp_path / "vars.json").write_text(json.dumps({"code": "000", "city": "Hawkins"}))
    (tmp_path / "notes.txt").write_text("attached")
    key = uuid.uuid4().hex
    options = [
        str(tmp_path / "people.csv"),
        *("--subject", "All options", "--template", "greeting", "--content-file", str(tmp_path / "content.txt")),
        *("--variables-file", str(tmp_path / "vars.json"), "--var", "code=123"),
        *("--attach", str(tmp_path / "notes.txt"), "--reply-to", "replies@example.org"),
        *("--tag", "spring", "--tag", "cli", "--expires-at", "PT1H", "--idempotency-key", key),
        *("--callback-url", f"http://127.0.0.1:{free_port()}/hook", "--url", client.base_url),
    ]
    result = send(*options)
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.splitlines()[0]
    message = received(module_sink, ann)[0].message
    assert message["Reply-To"] == "replies@example.org"
    assert text(message).startswith("Hello Ann from Hawkins, your code is 123.\nFrom the file.")
    [attached] = list(message.iter_attachments())
    assert attached.get_filename() == "notes.txt" and attached.get_content() == "attached"
    job = client.get_job(job_id)
    assert job["tags"] == ["spring", "cli"] and job["expires_at"]

    again = send(*options)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == job_id and "same job" in again.stderr
    assert len(received(module_sink, ann)) == 1


def test_send_at_schedules_the_job(client: EmailServiceClient, tmp_path: Path):
    path = tmp_path / "list.json"
    path.write_text(json.dumps(tagged("later")))
    result = send(str(path), "--subject", "s", "--send-at", "PT1H", "--no-wait", "--url", client.base_url)
    assert result.returncode == 0, result.stderr
    job = client.get_job(result.stdout.strip())
    assert job["status"] == "scheduled" and job["send_at"]
    client.cancel(job["id"])
