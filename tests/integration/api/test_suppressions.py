"""Suppressions and one-click unsubscribe (RFC 8058) through the HTTP API on real servers: the lists of accounts
and the shared one end to end (their cases: tests/unit/api/test_suppressions.py,
tests/unit/services/test_suppression_scopes.py)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.servers import PUBLIC_URL, FeatureStack
from tests.support.stack import ApiClient


def _domain() -> str:
    return f"u-{uuid.uuid4().hex[:10]}.example.com"


def _unsubscribe_path(stack: FeatureStack, address: str) -> str:
    message = next(m.message for m in stack.sink.handler.messages() if m.recipients == [address])
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    match = re.fullmatch(rf"<{re.escape(PUBLIC_URL)}(/unsubscribe/[^>]+)>", message["List-Unsubscribe"])
    assert match, message["List-Unsubscribe"]
    return match.group(1)


def _anonymous(stack: FeatureStack, method: str, path: str, **kwargs: Any) -> httpx.Response:
    with httpx.Client(base_url=stack.api.url, timeout=10, follow_redirects=False) as client:
        return client.request(method, path, **kwargs)


def _suppressed(stack: FeatureStack) -> dict[str, dict[str, Any]]:
    return _suppressed_for(stack.api)


def _send(stack: FeatureStack, recipients: list[str], **options: Any) -> dict[str, Any]:
    return _send_as(stack.api, recipients, **options)


def _send_as(api: ApiClient, recipients: list[str], **options: Any) -> dict[str, Any]:
    answer = api.post_job({"recipients": recipients, "subject": "news", "content": "c", **options})
    assert answer.status_code == 202, answer.text
    return api.wait_until_completed(answer.json()["id"])


@pytest.fixture
def two_accounts(feature_stack: FeatureStack) -> Iterator[tuple[ApiClient, ApiClient]]:
    """The API as keys of two new accounts call it."""
    keys = (feature_stack.api.new_key(f"{name}-{uuid.uuid4().hex[:8]}") for name in ("alpha", "beta"))
    alpha, beta = (ApiClient(feature_stack.api.url, {"Authorization": f"Bearer {key}"}) for key in keys)
    yield alpha, beta
    alpha.close()
    beta.close()


def _suppressed_for(api: ApiClient) -> dict[str, dict[str, Any]]:
    items = api.client.get("/api/suppressions", params={"limit": 1000}).json()["items"]
    return {item["email"]: item for item in items}


def test_one_click_unsubscribe_suppresses_the_recipient_and_later_jobs_skip_it(feature_stack: FeatureStack):
    domain = _domain()
    leaving, staying = f"leaving@{domain}", f"staying@{domain}"
    _send(feature_stack, [leaving, staying])
    path = _unsubscribe_path(feature_stack, leaving)

    page = _anonymous(feature_stack, "GET", path)
    assert page.status_code == 200 and '<form method="post">' in page.text
    assert leaving not in _suppressed(feature_stack), "opening the link unsubscribes nobody"
    for _ in range(2):  # the same answer however often it is used
        answer = _anonymous(feature_stack, "POST", path, content="List-Unsubscribe=One-Click",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert answer.status_code == 200 and leaving in answer.text
    entry = _suppressed(feature_stack)[leaving]
    assert entry["reason"] == "unsubscribed" and entry["job_id"]
    assert staying not in _suppressed(feature_stack)

    before = len(feature_stack.messages_to(domain))
    job = _send(feature_stack, [leaving, staying])
    assert (job["counts"]["sent"], job["counts"]["suppressed"]) == (1, 1)
    assert len(feature_stack.messages_to(domain)) == before + 1
    refused = feature_stack.api.recipients(job["id"], status="suppressed")[0]
    assert refused["email"] == leaving and "suppression list" in refused["error"]


def test_a_forged_or_altered_link_suppresses_nobody(feature_stack: FeatureStack):
    domain = _domain()
    victims = [f"a@{domain}", f"b@{domain}"]
    _send(feature_stack, victims)
    path = _unsubscribe_path(feature_stack, victims[0])
    job_id, position, signature = path.rsplit("/", 1)[1].split(".")
    forged = [
        f"/unsubscribe/{job_id}.1.{signature}",  # another recipient, the same signature
        f"/unsubscribe/{job_id}.{position}.{'A' * 22}",
        f"/unsubscribe/{uuid.uuid4()}.{position}.{signature}",
        "/unsubscribe/not-a-token",
    ]
    for link in forged:
        assert _anonymous(feature_stack, "POST", link, content="List-Unsubscribe=One-Click").status_code == 404
    assert not set(victims) & set(_suppressed(feature_stack))


def test_an_unsubscribe_suppresses_for_its_account_and_a_hard_bounce_for_every_account(
    feature_stack: FeatureStack, two_accounts: tuple[ApiClient, ApiClient]
):
    alpha, beta = two_accounts
    domain = _domain()
    leaving, gone = f"leaving@{domain}", f"gone@{domain}"
    feature_stack.sink.handler.reject_rcpt.add(gone)  # 550 to its RCPT: the mailbox is not there
    first = _send_as(alpha, [leaving, gone])
    assert (first["counts"]["sent"], first["counts"]["failed"]) == (1, 1)
    answer = _anonymous(feature_stack, "POST", _unsubscribe_path(feature_stack, leaving),
                        content="List-Unsubscribe=One-Click")  # fmt: skip
    assert answer.status_code == 200
    assert set(_suppressed_for(alpha)) == {leaving}, "the bounce is on the shared list, not alpha's"
    assert _suppressed_for(beta) == {}

    again = _send_as(alpha, [leaving, gone])
    assert again["counts"]["suppressed"] == 2
    errors = {r["email"]: r["error"] for r in alpha.recipients(again["id"])}
    assert errors == {
        leaving: "suppressed: on this account's suppression list (unsubscribed)",
        gone: "suppressed: on the shared suppression list (bounced)",
    }
    delivered = len([m for m in feature_stack.sink.handler.messages() if m.recipients == [leaving]])
    other = _send_as(beta, [leaving, gone])
    assert (other["counts"]["sent"], other["counts"]["suppressed"]) == (1, 1)
    assert len([m for m in feature_stack.sink.handler.messages() if m.recipients == [leaving]]) == delivered + 1
    [skipped] = beta.recipients(other["id"], status="suppressed")
    assert (skipped["email"], skipped["error"]) == (gone, "suppressed: on the shared suppression list (bounced)")


def test_addresses_are_added_and_removed_through_the_api(feature_stack: FeatureStack):
    client = feature_stack.api.client
    address = f"Someone@{_domain().upper()}"
    added = client.post("/api/suppressions", json={"email": address})
    assert added.status_code == 201 and added.json()["email"] == address.lower()
    assert client.post("/api/suppressions", json={"email": address}).status_code == 200
    assert _send(feature_stack, [address])["counts"]["suppressed"] == 1
    assert client.delete(f"/api/suppressions/{address}").status_code == 204
    assert client.delete(f"/api/suppressions/{address}").status_code == 404
    assert _send(feature_stack, [address])["counts"]["sent"] == 1
    refused = client.post("/api/suppressions", json={"email": "not an address"})
    assert refused.status_code == 422
    assert refused.json()["details"] == [
        {"field": "email", "reason": "An email address must have an @-sign.", "address": "not an address"}
    ]
    not_an_address = client.delete("/api/suppressions/" + "c" * 120)
    assert not_an_address.status_code == 422 and not_an_address.json()["details"][0]["address"] == "c" * 100 + "…"
    assert _anonymous(feature_stack, "GET", "/api/suppressions").status_code == 401


def test_an_address_suppressed_after_acceptance_is_not_sent_to(feature_stack: FeatureStack):
    domain = _domain()
    late = f"late@{domain}"
    answer = feature_stack.api.post_job({"recipients": [late, f"other@{domain}"], "subject": "s", "send_at": "PT2S"})
    feature_stack.api.client.post("/api/suppressions", json={"email": late})
    job = feature_stack.api.wait_until_completed(answer.json()["id"])
    assert (job["counts"]["sent"], job["counts"]["suppressed"]) == (1, 1)
    assert [m.recipients for m in feature_stack.messages_to(domain)] == [[f"other@{domain}"]]


def test_transactional_jobs_may_go_without_the_link(feature_stack: FeatureStack):
    domain = _domain()
    _send(feature_stack, [f"a@{domain}"], list_unsubscribe=False)
    message = feature_stack.messages_to(domain)[0].message
    assert message["List-Unsubscribe"] is None and message["List-Unsubscribe-Post"] is None
