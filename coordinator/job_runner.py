"""The job runner: moves jobs through the gate and onto the deployment engine, one tick at a time.

Each tick (a background thread, every second): submitted and awaiting jobs are re-checked against
the verified signed decisions and budgets; a queued job starts once every involved partner's node
is online (a run token is minted, the Flower run submitted with the run configuration); running
jobs whose stop was requested are stopped; a run that Flower reports ended (its status is read
every 30 s) without the ServerApp reporting an outcome is failed. Progress itself arrives from the
ServerApp over the API.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from coordinator.errors import CoordinatorError
from coordinator.platform import job_runs
from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.jobs import JobState, check_gate
from coordinator.platform.nodes import online_partners
from coordinator.store.tables import JobRow

__all__ = ["JobRunner", "RunLauncher"]

_log = logging.getLogger("loyalfed.coordinator.runner")
# Flower's run status texts that mean the run is over.
_ENDED = "finished"


class RunLauncher(Protocol):
    def launch(self, job_id: str, run_config_toml: str) -> str: ...

    def status(self, run_id: str) -> str | None: ...

    def stop(self, run_id: str) -> None: ...


class JobRunner:
    """Drives jobs from ``submitted`` to ``running`` (and ``stopped``) on the supervised SuperLink."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        trail: AuditTrail,
        launcher: RunLauncher | None,
        *,
        coordinator_url: str,
        coordinator_ca: Path | None,
        interval_s: float = 1.0,
        status_every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._trail = trail
        self._launcher = launcher
        self._url = coordinator_url
        self._ca = coordinator_ca
        self._interval_s = interval_s
        # Flower's run status is read through its CLI (a process start, ~1 s of CPU): it is only the
        # fallback for a run that ended without reporting, so it is read every ``status_every_s``.
        self._status_every_s, self._clock = status_every_s, clock
        self._status_read: dict[str, float] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._waiting_noted: set[str] = set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stopping.wait(self._interval_s):
            try:
                self.tick()
            except Exception:  # thread boundary: log and keep the runner alive for the next tick
                _log.exception("job runner tick failed")

    def tick(self) -> None:
        with self._sessions() as session:
            for job in job_runs.jobs_in(session, JobState.SUBMITTED, JobState.AWAITING_APPROVAL):
                check_gate(session, self._trail, job)
            for job in job_runs.jobs_in(session, JobState.QUEUED):
                self._start_if_ready(session, job)
            for job in job_runs.jobs_in(session, JobState.RUNNING):
                self._watch(session, job)

    def _start_if_ready(self, session: Session, job: JobRow) -> None:
        if self._launcher is None:
            return
        partners = job_runs.run_partners(session, job)
        offline = sorted(set(partners) - online_partners(session, now=self._trail.clock()))
        if offline:
            if job.id not in self._waiting_noted:
                self._waiting_noted.add(job.id)
                job_runs.note(
                    session, self._trail, job, f"waiting for nodes to come online: {', '.join(offline)}"
                )
            return
        spec = job_runs.job_spec_for_run(session, job)
        token = job_runs.begin_run(session, self._trail, job_id=job.id)
        config = job_runs.run_config(
            spec,
            expected_nodes=len(partners),
            coordinator_url=self._url,
            token=token,
            ca=str(self._ca) if self._ca else "",
            members_may_overlap=job_runs.members_may_overlap(session, partners),
        )
        try:
            job.flower_run_id = self._launcher.launch(job.id, config)
        except (CoordinatorError, OSError) as err:
            job_runs.finish_run(
                session,
                self._trail,
                job_id=job.id,
                state=JobState.FAILED,
                reason=f"the Flower run could not be started ({err})",
            )
            return
        job_runs.note(session, self._trail, job, f"Flower run {job.flower_run_id} submitted")

    def _watch(self, session: Session, job: JobRow) -> None:
        if self._launcher is None or job.flower_run_id is None:
            return
        if job.stop_requested:
            try:
                self._launcher.stop(job.flower_run_id)
            except CoordinatorError as err:
                _log.warning("stopping run %s: %s", job.flower_run_id, err)
            job_runs.finish_run(session, self._trail, job_id=job.id, state=JobState.STOPPED, reason="stopped")
            return
        now = self._clock()
        if now - self._status_read.get(job.id, -self._status_every_s) < self._status_every_s:
            return
        self._status_read[job.id] = now
        status = self._launcher.status(job.flower_run_id)
        if status is not None and status.startswith(_ENDED):
            session.refresh(job)
            if job.state == JobState.RUNNING.value:
                job_runs.finish_run(
                    session,
                    self._trail,
                    job_id=job.id,
                    state=JobState.FAILED,
                    reason=f"the Flower run ended ({status}) without reporting an outcome",
                )
