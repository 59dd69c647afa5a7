"""Lanes and turns with the production pieces: two separate `email-service worker` processes (as two hosts
would run them), the scheduler, PostgreSQL, Redis and a relay limited by SEND_RATE. What is asserted is
the order in which the relay receives messages, shares within bounds and the broker's queue length; how
long things take is measured by bench/lanes.py."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.fake_relay import Behaviour, FakeRelay
from tests.support.servers import REDIS_URL, own_database
from tests.support.stack import ApiClient, ApiServer, SchedulerProcess, WorkerProcess, relay_env, settings_from

SEND_RATE = 400
THREADS = 6


class Lanes:
    """The running stack, a key of each of three accounts, and a sampler of the broker's queue length."""

    def __init__(self, env: dict[str, str], logs: Path, relay: FakeRelay) -> None:
        self.env, self.relay = env, relay
        self.workers = [WorkerProcess(env, logs / f"worker-{i}.log").wait_ready() for i in range(2)]
        self.scheduler = SchedulerProcess(env, logs / "scheduler.log").wait_ready()
        self.api = ApiServer(settings_from(env)).start()
        self.accounts = {
            name: ApiClient(self.api.url, {"Authorization": f"Bearer {self.api.new_key(name + self.api.account_name)}"})
            for name in ("alpha", "bravo", "charlie")
        }
        self.broker = redis.Redis.from_url(REDIS_URL)
        self.queue_key = env["CELERY_BROKER_KEY_PREFIX"] + env["CELERY_QUEUE"]
        self.longest_queue = 0
        self._sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def post(self, account: str, tag: str, count: int, lane: str) -> str:
        recipients = [f"{tag}{i}@example.com" for i in range(count)]
        answer = self.accounts[account].post_job({"recipients": recipients, "subject": tag, "lane": lane})
        assert answer.status_code == 202, answer.text
        return answer.json()["id"]

    def arrived(self, tag: str) -> int:
        """Messages of the job whose addresses start with ``tag`` at the relay so far."""
        return sum(recipient.startswith(tag) for recipient, _ in self.relay.recipient_arrivals())

    def wait_for(self, tag: str, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.arrived(tag) < count:
            assert time.monotonic() < deadline, f"{self.arrived(tag)} of {count} messages of {tag} arrived"
            time.sleep(0.05)

    def _sample(self) -> None:
        while not self._sampling.wait(0.1):
            self.longest_queue = max(self.longest_queue, int(self.broker.llen(self.queue_key)))

    def stop(self) -> None:
        self._sampling.set()
        for client in self.accounts.values():
            client.close()
        self.api.stop()
        self.scheduler.stop()
        for worker in self.workers:
            worker.stop()


@pytest.fixture(scope="module")
def lanes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lanes]:
    relay = FakeRelay(Behaviour(rtt=0.002)).start()
    prefix = f"lanes-{time.monotonic_ns()}:"
    with own_database() as url:
        env = relay_env(
            url,
            REDIS_URL,
            prefix,
            relay.port,
            SEND_RATE=str(SEND_RATE),
            SMTP_CONCURRENCY=str(THREADS),
            WORKER_PROCESSES="1",  # each `worker` here is a host of one process, as every process is told
            SCHEDULER_INTERVAL="0.5",
        )
        running = Lanes(env, tmp_path_factory.mktemp("lanes"), relay)
        try:
            yield running
        finally:
            running.stop()
            relay.stop()
            for key in running.broker.scan_iter(match=f"{prefix}*"):
                running.broker.delete(key)


def test_a_transactional_message_goes_before_the_bulk_backlog(lanes: Lanes):
    lanes.post("alpha", "news-", 1200, "bulk")
    lanes.wait_for("news-", 100)
    lanes.post("alpha", "reset-", 1, "transactional")
    lanes.wait_for("reset-", 1)
    assert lanes.arrived("news-") < 600, "the reset waited for the newsletter"
    lanes.wait_for("news-", 1200)


def test_three_accounts_sending_at_once_share_the_rate(lanes: Lanes):
    start = len(lanes.relay.recipient_arrivals())
    for account in ("alpha", "bravo", "charlie"):
        lanes.post(account, f"share-{account}-", 600, "bulk")
    lanes.wait_for("share-", 1800, timeout=90)
    arrivals = [recipient for recipient, _ in lanes.relay.recipient_arrivals(start)]
    first_done = min(
        max(i for i, recipient in enumerate(arrivals) if recipient.startswith(f"share-{account}-"))
        for account in ("alpha", "bravo", "charlie")
    )
    while_all_send = Counter(recipient.split("-")[1] for recipient in arrivals[: first_done + 1])
    for account, count in while_all_send.items():
        assert 0.85 / 3 <= count / (first_done + 1) <= 1.15 / 3, (account, while_all_send)


def test_a_small_job_behind_a_big_one_gets_its_share_at_once(lanes: Lanes):
    lanes.post("alpha", "big-", 1500, "bulk")
    lanes.wait_for("big-", 50)
    lanes.post("bravo", "small-", 80, "bulk")
    lanes.wait_for("small-", 80)
    assert lanes.arrived("big-") < 750, "the small job waited for the big one"
    lanes.wait_for("big-", 1500)


def test_pause_stops_sending_within_two_seconds_and_a_lane_change_takes_over(lanes: Lanes):
    job = lanes.post("charlie", "paused-", 1000, "bulk")
    lanes.wait_for("paused-", 100)
    assert lanes.accounts["charlie"].client.post(f"/api/email/{job}/pause").status_code == 200
    time.sleep(2)
    held = lanes.arrived("paused-")
    time.sleep(1.5)
    assert lanes.arrived("paused-") == held < 1000, "sent while paused"

    other = lanes.post("charlie", "moved-", 2000, "bulk")
    assert lanes.accounts["charlie"].client.post(f"/api/email/{job}/resume").status_code == 200
    lanes.wait_for("moved-", 20)
    moved = lanes.accounts["charlie"].client.post(f"/api/email/{other}/lane", json={"lane": "transactional"})
    assert moved.status_code == 200 and moved.json()["lane"] == "transactional"
    time.sleep(2)
    start = len(lanes.relay.recipient_arrivals())
    lanes.wait_for("moved-", 2000)
    since = Counter(recipient.split("-")[0] for recipient, _ in lanes.relay.recipient_arrivals(start))
    assert since["moved"] >= 0.75 * sum(since.values()), ("the bulk job kept its turns", since)
    lanes.wait_for("paused-", 1000)
    assert max(lanes.relay.message_ids().values()) == 1, "a message was sent twice"


def test_the_broker_holds_no_more_wake_ups_than_a_worker_s_threads(lanes: Lanes):
    """Run last: the sampler has watched the queue through every test before. Each publisher keeps at most a
    host's threads waiting (a worker here is a host of one process); the two hosts, the API and the
    scheduler each count from their own last look at the broker, so as many again may be published at
    the same moment by publishers that each saw room."""
    assert 0 < lanes.longest_queue <= 2 * 2 * THREADS
    for worker in lanes.workers:
        assert "email_service.wake" in worker.log(), "both worker processes took work"
