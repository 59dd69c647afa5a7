"""Two accounts and an operator share one service: every API route and dashboard page, for read, change, delete
and list, answers another account's job, template or suppression as if it did not exist, and allows it to each
key of the owning account, a key made after the objects (a rotation) included. The rules' single cases are
unit tests (tests/unit/api/); this runs them all against PostgreSQL through HTTP, as callers meet them."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.support.stack import ApiServer, settings_from

DASHBOARD_SECRET = "d" * 40


@dataclass(frozen=True)
class Caller:
    name: str
    key: str

    def api(self, service: ApiServer) -> httpx.Client:
        return httpx.Client(base_url=service.url, timeout=15, headers={"Authorization": f"Bearer {self.key}"})

    @contextlib.contextmanager
    def dashboard(self, service: ApiServer) -> Iterator[httpx.Client]:
        """A browser signed in to the dashboard with this caller's key."""
        with httpx.Client(base_url=service.url, timeout=15) as browser:
            token = _token(browser, "/dashboard/login")
            answer = browser.post("/dashboard/login", data={"api_key": self.key, "csrf_token": token})
            assert answer.status_code == 303, answer.text
            yield browser


@dataclass(frozen=True)
class World:
    service: ApiServer
    alice: Caller  # the owner of every object below
    alice_next: Caller  # a key of alice's account made after the objects: a rotation
    bob: Caller  # another account
    ops: Caller  # an admin key of a third account
    job: str
    template: str
    suppressed: str


def _token(browser: httpx.Client, page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', browser.get(page).text)
    assert match, page
    return match.group(1)


@pytest.fixture(scope="module")
def world(postgres_url: str) -> Iterator[World]:
    env = {
        "DATABASE_URL": postgres_url,
        "CELERY_BROKER_URL": "memory://",
        "DASHBOARD_SECRET": DASHBOARD_SECRET,
        "DASHBOARD_COOKIE_SECURE": "false",
    }
    service = ApiServer(settings_from(env)).start()
    tag = uuid.uuid4().hex[:8]
    alice = Caller(f"alice-{tag}", service.new_key(f"alice-{tag}"))
    bob = Caller(f"bob-{tag}", service.new_key(f"bob-{tag}"))
    ops = Caller(f"ops-{tag}", service.new_key(f"ops-{tag}", role="admin"))
    template, suppressed = f"promo-{tag}", f"only-alice-{tag}@example.com"
    with alice.api(service) as client:
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        job = client.post("/api/email/", json={"recipients": ["will@example.com"], "subject": "s", "send_at": later})
        assert job.status_code == 202, job.text
        made = client.post("/api/templates", json={"name": template, "subject": "Alice's", "text": "alice text"})
        assert made.status_code == 201, made.text
        assert client.post("/api/suppressions", json={"email": suppressed}).status_code == 201
    alice_next = Caller(f"{alice.name}-next", service.new_key(f"{alice.name}-next", account=alice.name))
    yield World(service, alice, alice_next, bob, ops, job.json()["id"], template, suppressed)
    service.stop()


def _api_routes(w: World) -> list[tuple[str, str, dict[str, object] | None]]:
    """Every API route that names one of alice's objects: (method, path, JSON body)."""
    job, name, email = w.job, w.template, w.suppressed
    return [
        ("GET", f"/api/email/{job}", None),
        ("GET", f"/api/email/{job}/recipients", None),
        ("POST", f"/api/email/{job}/pause", None),
        ("POST", f"/api/email/{job}/resume", None),
        ("POST", f"/api/email/{job}/retry", None),
        ("POST", f"/api/email/{job}/lane", {"lane": "transactional"}),
        ("POST", f"/api/email/{job}/cancel", None),
        ("GET", f"/api/templates/{name}", None),
        ("GET", f"/api/templates/{name}/versions", None),
        ("GET", f"/api/templates/{name}?version=1", None),
        ("POST", f"/api/templates/{name}/preview", {}),
        ("DELETE", f"/api/templates/{name}", None),
        ("DELETE", f"/api/suppressions/{email}", None),
    ]


def _dashboard_routes(w: World) -> list[tuple[str, str, dict[str, str]]]:
    """Every dashboard page or form that names one of alice's objects: (method, path, form)."""
    job, name = w.job, w.template
    preview = {"version": "", "subject": "s", "content": "", "email": "p@example.com", "name": "", "variables": "{}"}
    return [
        ("GET", f"/dashboard/jobs/{job}", {}),
        ("GET", f"/dashboard/jobs/{job}/summary", {}),
        ("GET", f"/dashboard/jobs/{job}/recipients", {}),
        *[("GET", f"/dashboard/jobs/{job}/{action}", {}) for action in ("pause", "resume", "cancel", "retry")],
        *[("POST", f"/dashboard/jobs/{job}/{action}", {}) for action in ("pause", "resume", "cancel", "retry")],
        ("GET", f"/dashboard/templates/{name}", {}),
        ("POST", f"/dashboard/templates/{name}", preview),
    ]


def _alice_objects_unchanged(w: World) -> None:
    with w.alice.api(w.service) as client:
        assert client.get(f"/api/email/{w.job}").json()["status"] == "scheduled"
        template = client.get(f"/api/templates/{w.template}").json()
        assert (template["subject"], template["text"]) == ("Alice's", "alice text")
        assert w.suppressed in {entry["email"] for entry in client.get("/api/suppressions").json()["items"]}


@pytest.mark.parametrize("intruder", ["bob", "ops"])
def test_another_accounts_objects_answer_404_on_every_api_route(world: World, intruder: str):
    caller: Caller = getattr(world, intruder)
    with caller.api(world.service) as client:
        for method, path, body in _api_routes(world):
            answer = client.request(method, path, json=body)
            assert answer.status_code == 404, (intruder, method, path, answer.text)
            assert answer.json()["error"] == "not_found"
        assert world.job not in {job["id"] for job in client.get("/api/email/", params={"limit": 200}).json()["items"]}
        assert world.template not in {t["name"] for t in client.get("/api/templates").json()["items"]}
        assert world.suppressed not in {e["email"] for e in client.get("/api/suppressions").json()["items"]}
        # A change made under the same name is the intruder's own, and leaves alice's object as it was.
        made = client.put(f"/api/templates/{world.template}", json={"subject": "Forged", "text": "forged"})
        assert made.status_code == 201 and made.json()["version"] == 1, made.text
        assert client.post("/api/suppressions", json={"email": world.suppressed}).status_code == 201
        assert client.delete(f"/api/suppressions/{world.suppressed}").status_code == 204
        assert client.delete(f"/api/templates/{world.template}").status_code == 204
    _alice_objects_unchanged(world)


def test_another_accounts_objects_answer_404_on_every_dashboard_page(world: World):
    with world.bob.dashboard(world.service) as browser:
        token = _token(browser, "/dashboard/jobs")
        for method, path, form in _dashboard_routes(world):
            answer = browser.request(method, path, data={**form, "csrf_token": token} if method == "POST" else None)
            assert answer.status_code == 404, (method, path, answer.status_code)
        assert world.job not in browser.get("/dashboard/jobs").text
        assert world.template not in browser.get("/dashboard/templates").text
        assert world.suppressed not in browser.get("/dashboard/suppressions").text
        removed = browser.post("/dashboard/suppressions/remove", data={"email": world.suppressed, "csrf_token": token})
        assert removed.status_code == 303
    _alice_objects_unchanged(world)


@pytest.mark.parametrize("owner", ["alice", "alice_next"])
def test_every_key_of_the_owning_account_reads_them_all(world: World, owner: str):
    caller: Caller = getattr(world, owner)
    with caller.api(world.service) as client:
        for method, path, _ in _api_routes(world):
            if method == "GET":
                assert client.get(path).status_code == 200, (owner, path)
        preview = client.post(f"/api/templates/{world.template}/preview", json={})
        assert preview.status_code == 200 and preview.json()["text"] == "alice text"
        assert world.job in {job["id"] for job in client.get("/api/email/").json()["items"]}
    with caller.dashboard(world.service) as browser:
        for method, path, _ in _dashboard_routes(world):
            if method == "GET":
                assert browser.get(path).status_code == 200, (owner, path)
        assert world.suppressed in browser.get("/dashboard/suppressions").text


def test_the_operator_sees_every_accounts_jobs_in_the_dashboard(world: World):
    with world.ops.dashboard(world.service) as browser:
        assert world.job in browser.get("/dashboard/jobs").text
        assert browser.get(f"/dashboard/jobs/{world.job}").status_code == 200
        # Alice's template and suppression list stay hers, for an operator too.
        assert browser.get(f"/dashboard/templates/{world.template}").status_code == 404
        assert world.suppressed not in browser.get("/dashboard/suppressions").text


def test_changes_within_the_account_work_with_the_rotated_key(world: World):
    with world.alice_next.api(world.service) as client:
        changed = client.put(f"/api/templates/{world.template}", json={"subject": "Alice's", "text": "alice text"})
        assert changed.status_code == 200 and changed.json()["version"] >= 2
        assert client.delete(f"/api/suppressions/{world.suppressed}").status_code == 204
        assert client.post("/api/suppressions", json={"email": world.suppressed}).status_code == 201
