"""How long POST /api/email/ takes to answer, over real HTTP, for 1, 1,000 and 100,000 recipients.

The API runs under gunicorn (2 workers) in each configuration; no Celery worker runs, so every
job just stays queued. The figure is the client's wall time for one request whose JSON body was
encoded beforehand: upload, parsing, validation, storage, publishing, answer. A baseline then
times validating the same addresses with email-validator alone versus the service's fast path.

    .venv/bin/python bench/intake.py
    .venv/bin/python bench/intake.py --sizes 1 1000 --reps 10 10 --configs postgres-redis
"""

from __future__ import annotations

import argparse
import time

import httpx
from email_validator import validate_email

from _support import (
    CONFIG_LABELS,
    CONFIGS,
    deployment,
    exit_cleanly_on_sigterm,
    job_body,
    make_addresses,
    median_and_min,
    post_job,
    print_machine,
    print_table,
)
from email_service.message.addresses import normalize_address

GOALS_SECONDS = {1: 0.010, 1_000: 0.050, 100_000: 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 1_000, 100_000], help="recipients per job")
    parser.add_argument("--reps", type=int, nargs="+", default=[5, 5, 3], help="repetitions, one per size")
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--api-workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--warmup", type=int, default=4, help="untimed 1-recipient POSTs before timing")
    parser.add_argument("--baseline-size", type=int, default=100_000, help="addresses validated (0: skip)")
    args = parser.parse_args()
    if len(args.reps) != len(args.sizes):
        parser.error("give one --reps value per --sizes value")
    exit_cleanly_on_sigterm()
    print_machine()

    # Bodies are encoded once, outside the timed part: the client's JSON encoding is not the service's cost.
    bodies = {size: job_body(make_addresses(size)) for size in args.sizes}
    rows = []
    for config in args.configs:
        print(f"== {CONFIG_LABELS[config]}: starting the API ({args.api_workers} gunicorn workers)", flush=True)
        with deployment(config, "intake") as deployed, httpx.Client(timeout=300) as client:
            deployed.start_api(args.api_workers)
            # Several requests, so that each gunicorn worker (whichever accepts) has compiled the template
            # and opened its database pool before the clock runs.
            for _ in range(args.warmup):
                post_job(client, deployed.base_url, bodies.get(1) or job_body(make_addresses(1)), 1)
            for size, reps in zip(args.sizes, args.reps, strict=True):
                samples = []
                for _ in range(reps):
                    started = time.perf_counter()
                    post_job(client, deployed.base_url, bodies[size], size)
                    samples.append(time.perf_counter() - started)
                median, best = median_and_min(samples)
                goal = GOALS_SECONDS.get(size)
                print(f"   {size:>7,} recipients: " + ", ".join(f"{s * 1000:.1f}" for s in samples) + " ms", flush=True)
                rows.append(
                    [
                        CONFIG_LABELS[config],
                        f"{size:,}",
                        reps,
                        f"{median * 1000:,.1f}",
                        f"{best * 1000:,.1f}",
                        f"{goal * 1000:,.0f}" if goal else "-",
                        ("yes" if median <= goal else "NO") if goal else "-",
                    ]
                )

    print("\nPOST /api/email/ answer time (client wall time, body pre-encoded)")
    print_table(["configuration", "recipients", "reps", "median ms", "min ms", "goal ms", "median meets goal"], rows)

    if args.baseline_size:
        validation_baseline(args.baseline_size)


def validation_baseline(count: int) -> None:
    """email-validator on every address versus the service's fast path, on the same addresses."""
    addresses = make_addresses(count)
    started = time.perf_counter()
    for address in addresses:
        validate_email(address, check_deliverability=False)
    slow = time.perf_counter() - started
    started = time.perf_counter()
    for address in addresses:
        normalize_address(address)
    fast = time.perf_counter() - started
    print(f"\nAddress validation, {count:,} addresses, one by one in this process")
    print_table(
        ["method", "total ms", "µs per address"],
        [
            ["email_validator.validate_email", f"{slow * 1000:,.0f}", f"{slow / count * 1e6:.2f}"],
            ["email_service.message.addresses.normalize_address", f"{fast * 1000:,.0f}", f"{fast / count * 1e6:.2f}"],
        ],
    )
    print(f"normalize_address is {slow / fast:.1f}x faster than validate_email")


if __name__ == "__main__":
    main()
