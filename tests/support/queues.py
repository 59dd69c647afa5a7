"""A task queue that records what the services publish and runs nothing: no worker takes a wake-up,
so they stay waiting in the 'broker', as they would with every worker busy."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RecordingQueue:
    wake_ups: int = 0
    events_for: list[str] = field(default_factory=list)  # jobs whose webhook events were queued

    def wake(self) -> None:
        self.wake_ups += 1

    def waiting(self) -> int:
        return self.wake_ups

    def deliver_events(self, job_id: str) -> None:
        self.events_for.append(job_id)
