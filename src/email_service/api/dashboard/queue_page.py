"""The queue page: each lane's work, and the jobs with work due in the order workers serve them."""

from __future__ import annotations

from typing import Any

from email_service.api.dashboard.blueprint import blueprint, render, services, viewer
from email_service.services import accounts, reports

JOBS_PER_LANE = 50


@blueprint.get("/queue")
def queue() -> Any:
    # An account sees every lane's totals but only its own jobs (as on the jobs page).
    lanes = reports.queue_overview(services(), viewer().jobs_of, limit=JOBS_PER_LANE)
    return render(
        "queue.html",
        lanes=lanes,
        scoped=viewer().jobs_of is not None,
        account_names=accounts.names(services().readers) if viewer().sees_other_accounts else {},
    )
