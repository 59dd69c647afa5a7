"""Schemathesis over every operation of the live OpenAPI document: all checks, a valid key, no server error."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.support.servers import own_database
from tests.support.stack import ApiServer, settings_from

MAX_EXAMPLES = 500  # per operation, in the fuzzing phase; the examples and coverage phases add their own cases

# Operations that refuse, with a documented 422, requests the OpenAPI schema cannot tell from valid ones:
# addresses are checked by email-validator's rules, templates must have a body and render, a template_version
# must exist, a sender must be allowed... (README: "A request with any problem is refused as a whole").
# On them only, positive_data_acceptance (schema-valid data must not be refused) does not hold by design.
SEMANTICALLY_VALIDATED = [
    "POST /api/email/",
    "POST /api/suppressions/",
    "DELETE /api/suppressions/{email}",
    "POST /api/templates/",
    "PUT /api/templates/{name}",
    "POST /api/templates/preview",
    "POST /api/templates/{name}/preview",
]


@pytest.fixture(scope="module")
def api() -> Iterator[ApiServer]:
    # A database of its own: thousands of generated jobs, templates and suppressions stay out of other tests'.
    # No worker runs and the broker is in memory, so accepted jobs stay queued and nothing is ever sent.
    # MAX_REQUEST_BYTES keeps its default: the schema allows template bodies of 3 x 500,000 characters, and a
    # lower limit would answer 413 to requests the schema says are valid.
    with own_database() as url:
        env = {
            "DATABASE_URL": url,
            "CELERY_BROKER_URL": "memory://",
            "MAIL_DEFAULT_SENDER": "Service <service@example.org>",
            "WEBHOOK_SECRET": "fuzz-webhook-secret",  # so that a callback_url can be accepted, not always refused
            "MAX_RECIPIENTS": "50",
            "MAX_ATTACHMENT_BYTES": "100000",
        }
        server = ApiServer(settings_from(env)).start()
        yield server
        server.stop()


@pytest.fixture(scope="module")
def live_schema(api: ApiServer) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict(
        {
            "base-url": api.url,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                "with-security-parameters": False,  # the server's key on every call, not generated credentials
            },
            "checks": {"enabled": True},
            "operations": [
                {"include-name": SEMANTICALLY_VALIDATED, "checks": {"positive_data_acceptance": {"enabled": False}}}
            ],
        }
    )
    return schemathesis.openapi.from_url(api.url + "/api/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("live_schema")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_every_operation_answers_as_documented(case: schemathesis.Case, api: ApiServer) -> None:
    # Passed here rather than in the config, so that ignored_auth can take the key away and expect a 401.
    case.call_and_validate(headers=api.headers)
