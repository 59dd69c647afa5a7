"""Serving the metrics: the directory a launcher's processes share, and what an endpoint collects.

Processes started by one launcher (`serve`, `worker`, `dev`) write their figures to one directory
(prometheus_client's multiprocess mode: PROMETHEUS_MULTIPROC_DIR, set before they start), so an
endpoint serves the sum over all of them, the dead ones included: a counter does not go back when
gunicorn or the supervisor replaces a process. A process started on its own (the scheduler, tests)
counts in memory and serves its own figures. This module creates no metric: importing it writes
nothing to the directory.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

if TYPE_CHECKING:  # importing the services would create the metrics, and their files
    from email_service.services.reports import WaitingWork

log = logging.getLogger(__name__)

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


class QueueFigures:
    """Gauges read from the database at each scrape: recipients waiting, by status and by lane, and
    unfinished jobs. When the database does not answer, they are left out and the rest is served."""

    def __init__(self, read: Callable[[], WaitingWork]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        try:
            waiting = self._read()
        except Exception:  # the database is down: /readyz says so; the other figures are still served
            log.warning("queue figures not read", exc_info=True)
            return []
        recipients = GaugeMetricFamily(
            "email_service_queue_recipients",
            "Recipients of started jobs still to be sent (paused jobs' included): pending, deferred, sending.",
            labels=["status"],
        )
        for status, count in sorted(waiting.recipients.items()):
            recipients.add_metric([status], count)
        lanes = GaugeMetricFamily(
            "email_service_lane_recipients",
            "Recipients still to be sent in each lane: of started jobs (their rows still to send, paused jobs' "
            "included) and of queued jobs not started yet (their total).",
            labels=["lane", "stage"],
        )
        for lane, stages in sorted(waiting.lanes.items()):
            for stage, count in sorted(stages.items()):
                lanes.add_metric([lane, stage], count)
        unfinished = GaugeMetricFamily(
            "email_service_jobs_unfinished",
            "Jobs not finished: scheduled, queued, sending, paused.",
            labels=["status"],
        )
        for status, count in sorted(waiting.jobs.items()):
            unfinished.add_metric([status], count)
        return [recipients, lanes, unfinished]


class _AllProcesses:
    """The figures of every process writing to this process's metrics directory, or of this process."""

    def collect(self) -> Iterable[Metric]:
        folder = os.environ.get(MULTIPROCESS_ENV)
        if not folder:
            return REGISTRY.collect()
        merged: Iterable[Metric] = MultiProcessCollector(None, path=folder).collect()
        return merged


def registry(*extra: Collector) -> CollectorRegistry:
    """What a metrics endpoint of this process serves: the processes' figures, then ``extra``."""
    collected = CollectorRegistry()
    for collector in (_AllProcesses(), *extra):
        collected.register(collector)
    return collected


def share_directory(data_dir: Path, role: str) -> Path | None:
    """Give the processes this one is about to start a metrics directory, in the environment they
    inherit: a new empty ``DATA_DIR/metrics/<role>-<pid>``, after removing the folders of processes no
    longer running. The folder made, for the caller to remove once its processes have ended; None when
    a launcher above this process already set one (and cleared it)."""
    if os.environ.get(MULTIPROCESS_ENV):
        return None
    root = data_dir.resolve() / "metrics"
    root.mkdir(parents=True, exist_ok=True)
    for folder in root.iterdir():
        pid = folder.name.rpartition("-")[2]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    folder = root / f"{role}-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)  # a reused pid: those figures are another process's
    folder.mkdir()
    os.environ[MULTIPROCESS_ENV] = str(folder)
    return folder


def remove_directory(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def process_ended(pid: int) -> None:
    """A process of this directory ended: its share of the live gauges (sends in progress) goes."""
    if folder := os.environ.get(MULTIPROCESS_ENV):
        mark_process_dead(pid, folder)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
