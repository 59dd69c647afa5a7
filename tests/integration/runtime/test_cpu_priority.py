"""The workers yield the CPU to the API: their niceness, and their session's autogroup when they lead one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.stack import WorkerProcess, child_pids

REPORT = (
    "import os, sys; from email_service.runtime import cpu_priority; cpu_priority.lower(int(sys.argv[1])); "
    "print(os.getpriority(os.PRIO_PROCESS, 0)); print(open('/proc/self/autogroup').read().strip())"
)


def _lowered(niceness: int, *, own_session: bool) -> tuple[int, str]:
    """The niceness and autogroup line of a process that called lower(niceness)."""
    done = subprocess.run(
        [sys.executable, "-c", REPORT, str(niceness)],
        capture_output=True,
        text=True,
        check=True,
        start_new_session=own_session,
    )
    niceness_line, autogroup = done.stdout.splitlines()
    return int(niceness_line), autogroup


def _autogroup(pid: int | str = "self") -> str:
    return Path(f"/proc/{pid}/autogroup").read_text().strip()


def test_a_session_leader_lowers_its_niceness_and_its_sessions_share():
    niceness, autogroup = _lowered(7, own_session=True)
    assert niceness == 7
    assert autogroup.endswith(" nice 7") and autogroup != _autogroup()


def test_a_process_sharing_a_session_leaves_the_sessions_share_alone():
    niceness, autogroup = _lowered(7, own_session=False)
    assert niceness == 7
    assert autogroup == _autogroup(), "the test's own session (the shell's, for a user) must keep its share"


def test_zero_changes_nothing_and_a_higher_niceness_is_kept():
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert _lowered(0, own_session=True)[0] == mine
    assert _lowered(0, own_session=True)[1].endswith(" nice 0")
    already = subprocess.run(
        ["nice", "-n", "15", sys.executable, "-c", REPORT, "7"], capture_output=True, text=True, check=True
    )
    assert int(already.stdout.splitlines()[0]) == min(19, mine + 15), "lower() never raises the priority"


def test_the_worker_command_runs_its_processes_at_worker_nice(tmp_path: Path):
    env = {"DATA_DIR": str(tmp_path), "WORKER_NICE": "12", "DB_WAIT_SECONDS": "30"}
    command = [sys.executable, "-m", "email_service"]
    subprocess.run([*command, "db", "upgrade"], env={**os.environ, **env}, check=True, capture_output=True)
    worker = WorkerProcess(env, tmp_path / "worker.log", processes=2).wait_ready()
    try:
        processes = [worker.pid, *child_pids(worker.pid)]
        assert len(processes) == 3, worker.log()
        assert [os.getpriority(os.PRIO_PROCESS, pid) for pid in processes] == [12, 12, 12]
        assert {_autogroup(pid) for pid in processes} == {_autogroup(worker.pid)}
        assert _autogroup(worker.pid).endswith(" nice 12")
    finally:
        worker.stop()
