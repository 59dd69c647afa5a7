"""The dashboard in a real headless Chromium (Debian's) against a running ``email-service dev`` with API
keys on: sign in, follow a job to 100 % without reloading, pause and resume it, retry failures, preview
a template. Screenshots of each page go to DASHBOARD_SCREENSHOTS (``make screenshots``: docs/screenshots)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from email_service.runtime.catcher import REFUSED_DOMAIN
from tests.support.dev_server import DevServer

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package, installed by `make deploy-tools`
SEND_RATE = 40  # messages per second: a 240-recipient job sends for about 6 s, time to pause it
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "Debian's chromium is missing: `make deploy-tools` installs it"
    with sync_playwright() as playwright:
        # --no-sandbox: the tests run as root, where Chromium's own sandbox cannot start.
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    server = DevServer(tmp_path_factory.mktemp("dev"), env={"AUTH_DISABLED": "false", "SEND_RATE": str(SEND_RATE)})
    server.key = server.command("keys", "create", "operations").strip()  # type: ignore[attr-defined]
    server.start()
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def api(dev: DevServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {dev.key}"}  # type: ignore[attr-defined]
    with httpx.Client(base_url=dev.base, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("DASHBOARD_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def page(browser: Browser, dev: DevServer) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    signed_in = context.new_page()
    signed_in.goto(f"{dev.base}/dashboard/")
    expect(signed_in).to_have_url(re.compile(r"/dashboard/login\?next="))
    signed_in.get_by_label("API key").fill(dev.key)  # type: ignore[attr-defined]
    signed_in.get_by_role("button", name="Sign in").click()
    expect(signed_in.get_by_role("heading", name="Jobs")).to_be_visible()
    expect(signed_in.get_by_text("Key operations")).to_be_visible()
    yield signed_in
    context.close()


def send(api: httpx.Client, recipients: list[str], subject: str) -> str:
    answer = api.post("/api/email/", json={"recipients": recipients, "subject": subject, "content": "Hello"})
    assert answer.status_code == 202, answer.text
    job_id: str = answer.json()["id"]
    return job_id


def failed_recipients(api: httpx.Client, job_id: str) -> list[dict[str, str]]:
    items: list[dict[str, str]] = api.get(f"/api/email/{job_id}/recipients", params={"status": "failed"}).json()[
        "items"
    ]
    return items


def shoot(page: Page, shots: Path, name: str) -> None:
    path = shots / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    assert path.stat().st_size > 10_000  # a page was drawn, not a blank


def test_a_wrong_key_is_refused_and_the_login_page_shows_why(browser: Browser, dev: DevServer, shots: Path):
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{dev.base}/dashboard/jobs")
    page.get_by_label("API key").fill("es_not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("This API key is unknown or revoked, or its account is disabled.")
    expect(page).to_have_url(re.compile(r"/dashboard/login"))
    page.get_by_label("API key").fill("")
    shoot(page, shots, "login")
    context.close()


def test_a_job_is_followed_to_100_percent_and_paused_and_resumed_on_the_way(
    page: Page, api: httpx.Client, dev: DevServer, shots: Path
):
    job_id = send(api, [f"reader{i}@example.com" for i in range(240)], "December newsletter")
    page.goto(f"{dev.base}/dashboard/jobs/{job_id}")
    page.evaluate("window.loadedOnce = true")  # gone if the page reloads: progress must come without one
    expect(page.locator("#job-live .badge").first).to_have_text("sending", timeout=20_000)
    expect(page.locator("#job-live [data-lane]")).to_have_text("bulk")  # 240 recipients: bulk by its size

    page.get_by_role("link", name="Pause").click()
    expect(page.get_by_role("heading", name="Pause this job?")).to_be_visible()
    page.get_by_role("button", name="Yes, pause").click()
    expect(page.get_by_role("status").filter(has_text="Pause: done.")).to_be_visible()
    expect(page.locator("#job-live .badge").first).to_have_text("paused")
    time.sleep(1.5)  # batches give their recipients back within a second
    held = int(page.locator('[data-count="sent"]').inner_text())
    time.sleep(2)
    page.reload()
    assert int(page.locator('[data-count="sent"]').inner_text()) == held < 240  # nothing is sent while paused
    shoot(page, shots, "job-paused")

    page.get_by_role("link", name="Resume").click()
    page.get_by_role("button", name="Yes, resume").click()
    page.evaluate("window.loadedOnce = true")
    expect(page.locator("#job-live .progress-figure")).to_have_text("100 %", timeout=60_000)
    expect(page.locator("#job-live .badge").first).to_have_text("completed")
    assert page.evaluate("window.loadedOnce") is True  # the page followed the job by itself
    expect(page.locator('[data-count="sent"]')).to_have_text("240")
    expect(page.locator(".chart rect").first).to_be_attached()
    expect(page.get_by_role("link", name="Retry the failed")).to_have_count(0)  # nothing failed
    shoot(page, shots, "job")

    page.goto(f"{dev.base}/dashboard/jobs")
    row = page.locator(f'tr[data-job="{job_id}"]')
    expect(row.locator(".badge")).to_have_text("completed")
    expect(row.locator(".progress-figure")).to_have_text("100 %")


def test_failures_show_their_smtp_reply_and_are_retried(page: Page, api: httpx.Client, dev: DevServer, shots: Path):
    refused = [f"nobody{i}@{REFUSED_DOMAIN}" for i in range(3)]
    subject = "Reset <script>document.body.dataset.injected = 'yes'</script>"
    job_id = send(api, [*refused, "will@example.com", "eleven@example.com"], subject)
    page.goto(f"{dev.base}/dashboard/jobs/{job_id}")
    expect(page.locator("#job-live .badge").first).to_have_text("completed", timeout=30_000)
    expect(page.get_by_role("heading", level=1)).to_have_text(subject)  # shown as text, never run
    assert page.evaluate("document.body.dataset.injected") is None
    failures = page.locator("#job-live table")
    expect(failures).to_contain_text("550")
    expect(failures).to_contain_text(f"the catcher refuses every recipient at {REFUSED_DOMAIN}")
    expect(page.locator('[data-count="failed"]')).to_have_text("3")

    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("table.recipients tbody tr")).to_have_count(3)
    page.get_by_label("Address").fill("nobody1")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("table.recipients tbody tr")).to_have_count(1)
    expect(page.locator("table.recipients")).to_contain_text(refused[1])

    before = {r["email"]: r["updated_at"] for r in failed_recipients(api, job_id)}
    page.get_by_role("link", name="Retry the failed").click()
    expect(page.get_by_role("heading", name="Send again to the failed recipients?")).to_be_visible()
    shoot(page, shots, "confirm-retry")
    page.get_by_role("button", name="Yes, retry the failed").click()
    expect(page.get_by_role("status").filter(has_text="Retry the failed: done.")).to_be_visible()
    expect(page.locator("#job-live .badge").first).to_have_text("completed", timeout=30_000)
    after = {r["email"]: r["updated_at"] for r in failed_recipients(api, job_id)}
    assert sorted(after) == refused
    assert all(after[email] > before[email] for email in refused)  # sent a second time, refused a second time
    shoot(page, shots, "job-failures")


def test_a_template_preview_renders_the_variables_typed_and_frames_its_html_without_scripts(
    page: Page, api: httpx.Client, dev: DevServer, shots: Path
):
    template = {
        "name": "welcome",
        "subject": "Welcome {{ name }}",
        "text": "Hello {{ name }}, your code is {{ code }}.",
        "html": "<h1>Hello {{ name }}</h1><p>Code <b>{{ code }}</b></p>"
        "<script>document.body.dataset.ran = 'yes'</script>",
    }
    assert api.post("/api/templates/", json=template).status_code == 201
    page.goto(f"{dev.base}/dashboard/templates")
    page.get_by_role("link", name="welcome").click()
    page.get_by_label("Variables (a JSON object)").fill('{"name": "<Zoé>", "code": "42"}')
    page.get_by_role("button", name="Render the preview").click()
    expect(page.locator('[data-part="subject"]')).to_have_text("Welcome <Zoé>")
    expect(page.locator('[data-part="text"]')).to_contain_text("Hello <Zoé>, your code is 42.")
    frame = page.frame_locator("iframe.html-part")
    expect(frame.locator("h1")).to_have_text("Hello <Zoé>")
    expect(frame.locator("b")).to_have_text("42")
    assert frame.locator("body").get_attribute("data-ran") is None  # the sandbox runs no script
    shoot(page, shots, "template-preview")


def test_suppressions_are_added_found_and_removed(page: Page, dev: DevServer, shots: Path):
    page.goto(f"{dev.base}/dashboard/suppressions")
    page.get_by_label("Add an address").fill("max@example.com")
    page.get_by_role("button", name="Suppress").click()
    expect(page.get_by_role("status")).to_have_text("max@example.com is suppressed.")
    page.get_by_label("Search").fill("max@")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    shoot(page, shots, "suppressions")
    page.get_by_role("button", name="Remove max@example.com").click()
    expect(page.get_by_role("status")).to_contain_text("max@example.com is no longer suppressed")
    expect(page.locator("tbody tr")).to_have_count(0)


def test_pages_fit_a_phone_and_signing_out_ends_the_session(browser: Browser, page: Page, dev: DevServer, shots: Path):
    page.goto(f"{dev.base}/dashboard/jobs")
    expect(page.locator("tr[data-job]")).to_have_count(2)
    shoot(page, shots, "jobs")
    page.set_viewport_size(PHONE)
    page.goto(f"{dev.base}/dashboard/jobs")
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0  # wide tables scroll in their own box, the page does not
    page.locator("tr[data-job] a").first.click()
    shoot(page, shots, "job-phone")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/dashboard/login"))
    page.goto(f"{dev.base}/dashboard/jobs")
    expect(page).to_have_url(re.compile(r"/dashboard/login"))
