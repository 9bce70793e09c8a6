"""The job runner: moves jobs through the gate and onto the deployment engine, one tick at a time.

Each tick (a background thread, every second): submitted and awaiting jobs are re-checked against
the verified signed decisions and budgets; a queued job starts once every involved partner's node
is online (a run token is minted, the Flower run submitted with the run configuration); running
jobs whose stop was requested are stopped; a run that Flower reports ended (its status is read
every 10 s) without the ServerApp reporting an outcome (the coordinator or its SuperLink crashed
under it) resumes as a new Flower run from the job's last round checkpoint, at most
``max_resumes`` times, and is failed when it has no checkpoint or no resume left. Progress itself
arrives from the ServerApp over the API. At start-up, a job left running whose Flower run no longer
exists died with the coordinator that ran it: it is failed, and its reservations are held until
each node's accountant reports what it spent (``coordinator.budget_recovery``).
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
from coordinator.round_checkpoint import saved_round
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
        runs_dir: Path | None = None,
        max_resumes: int = 3,
        interval_s: float = 1.0,
        status_every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._trail = trail
        self._launcher = launcher
        self._url = coordinator_url
        self._ca = coordinator_ca
        self._interval_s = interval_s
        # Flower's run status (a Control API call) is only the fallback for a run that ended without
        # reporting, so it is read every ``status_every_s``, not on every tick. Such a run is a
        # crashed coordinator's: its SuperLink reports it ended once its ServerApp missed two 30 s
        # heartbeats (Flower 1.41's task heartbeat), and the job resumes at the next read; every
        # 10 s (one small call per running job) resumes it up to 20 s sooner than every 30 s did.
        self._status_every_s, self._clock = status_every_s, clock
        self._status_read: dict[str, float] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._waiting_noted: set[str] = set()
        self._runs_dir = runs_dir
        self._max_resumes = max_resumes
        self._resumes: dict[str, int] = {}
        self._recovered = False
        self._gate_inputs_seen: tuple[object, ...] | None = None

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
            if not self._recovered:
                self._recovered = self._recover(session)
            for job in self._jobs_at_the_gate(session):
                check_gate(session, self._trail, job)
            ready = [job for job in job_runs.jobs_in(session, JobState.QUEUED) if self._ready(session, job)]
            self._start(session, ready)
            for job in job_runs.jobs_in(session, JobState.RUNNING):
                self._watch(session, job)

    def _jobs_at_the_gate(self, session: Session) -> list[JobRow]:
        """Submitted jobs, and the awaiting ones only when a decision or an officer key changed.

        A waiting job's gate reads nothing else that can change while it waits, so re-checking
        every waiting job on every tick only burnt the service's CPU (with a thousand waiting jobs,
        most of it) without ever moving one.
        """
        inputs = job_runs.gate_inputs_version(session)
        if inputs == self._gate_inputs_seen:
            return job_runs.jobs_in(session, JobState.SUBMITTED)
        self._gate_inputs_seen = inputs
        return job_runs.jobs_in(session, JobState.SUBMITTED, JobState.AWAITING_APPROVAL)

    def _recover(self, session: Session) -> bool:
        """Start-up: fail each job left running whose Flower run no longer exists; True once done.

        Such a job died with the coordinator (or its SuperLink) that ran it. Failing it holds its
        unsettled reservations until each node's accountant reports what the job spent there
        (``coordinator.budget_recovery``): a node that cannot be reached now keeps its share held
        and is asked again on each of its heartbeats. A run the SuperLink still knows is left to
        ``_watch`` (resume from a checkpoint, or fail once it ends); while the SuperLink cannot
        answer, recovery is retried on the next tick.
        """
        for job in job_runs.jobs_in(session, JobState.RUNNING):
            if self._launcher is not None and job.flower_run_id is not None:
                try:
                    if self._launcher.status(job.flower_run_id) is not None:
                        continue
                except CoordinatorError as err:
                    _log.warning(
                        "start-up recovery: run %s unreadable (%s); retrying", job.flower_run_id, err
                    )
                    return False
            job_runs.finish_run(
                session,
                self._trail,
                job_id=job.id,
                state=JobState.FAILED,
                reason="the job's run died with the coordinator that ran it (no Flower run left)",
            )
        return True

    def _ready(self, session: Session, job: JobRow) -> bool:
        """Whether ``job`` may start now: a launcher, and every involved partner's node online."""
        if self._launcher is None:
            return False
        partners = job_runs.run_partners(session, job)
        offline = sorted(set(partners) - online_partners(session, now=self._trail.clock()))
        if offline:
            if job.id not in self._waiting_noted:
                self._waiting_noted.add(job.id)
                job_runs.note(
                    session, self._trail, job, f"waiting for nodes to come online: {', '.join(offline)}"
                )
            return False
        return True

    def _start(self, session: Session, jobs: list[JobRow]) -> None:
        """Mark ``jobs`` running and submit their Flower runs (an in-process Control API call each)."""
        launcher = self._launcher
        if launcher is None:  # no job is ready without one
            return
        for job in jobs:
            config = self._run_config(session, job)
            outcome: str | Exception
            try:
                outcome = launcher.launch(job.id, config)
            except (CoordinatorError, OSError) as err:
                outcome = err
            except Exception as err:  # the job fails with the reason instead of escaping the tick
                _log.exception("launching job %s", job.id)
                outcome = err
            self._record_launch(session, job, outcome)

    def _run_config(self, session: Session, job: JobRow) -> str:
        """Mint the job's run token (the job is now running) and build its Flower run configuration."""
        partners = job_runs.run_partners(session, job)
        spec = job_runs.job_spec_for_run(session, job)
        token = job_runs.begin_run(session, self._trail, job_id=job.id)
        return job_runs.run_config(
            spec,
            expected_nodes=len(partners),
            coordinator_url=self._url,
            token=token,
            ca=str(self._ca) if self._ca else "",
            members_may_overlap=job_runs.members_may_overlap(session, partners),
            checkpoint_dir=str(self.checkpoint_dir(job.id) or ""),
        )

    def _record_launch(self, session: Session, job: JobRow, outcome: str | Exception) -> None:
        if isinstance(outcome, Exception):
            job_runs.finish_run(
                session,
                self._trail,
                job_id=job.id,
                state=JobState.FAILED,
                reason=f"the Flower run could not be started ({outcome})",
            )
            return
        job.flower_run_id = outcome
        job_runs.note(session, self._trail, job, f"Flower run {job.flower_run_id} submitted")

    def checkpoint_dir(self, job_id: str) -> Path | None:
        """Where job ``job_id``'s ServerApp checkpoints its rounds (None: nowhere, no resume)."""
        return self._runs_dir / job_id / "checkpoint" if self._runs_dir is not None else None

    def _resume(self, session: Session, job: JobRow, status: str) -> bool:
        """Relaunch a job whose run was lost from its checkpoint; False when it cannot resume."""
        directory = self.checkpoint_dir(job.id)
        after_round = saved_round(directory) if directory is not None else None
        if self._launcher is None or after_round is None or job.flower_run_id is None:
            return False
        if self._resumes.get(job.id, 0) >= self._max_resumes:
            return False
        self._resumes[job.id] = self._resumes.get(job.id, 0) + 1
        token = job_runs.resume_run(
            session, self._trail, job_id=job.id, ended_run=job.flower_run_id, ended_status=status,
            after_round=after_round,
        )  # fmt: skip
        partners = job_runs.run_partners(session, job)
        config = job_runs.run_config(
            job_runs.job_spec_for_run(session, job),
            expected_nodes=len(partners),
            coordinator_url=self._url,
            token=token,
            ca=str(self._ca) if self._ca else "",
            members_may_overlap=job_runs.members_may_overlap(session, partners),
            checkpoint_dir=str(directory),
        )
        try:
            job.flower_run_id = self._launcher.launch(job.id, config)
        except (CoordinatorError, OSError) as err:
            reason = f"the Flower run could not be resumed ({err})"
            job_runs.finish_run(session, self._trail, job_id=job.id, state=JobState.FAILED, reason=reason)
            return True
        job_runs.note(
            session, self._trail, job, f"Flower run {job.flower_run_id} resumes after round {after_round}"
        )
        return True

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
            if job.state == JobState.RUNNING.value and not self._resume(session, job, status):
                job_runs.finish_run(
                    session,
                    self._trail,
                    job_id=job.id,
                    state=JobState.FAILED,
                    reason=f"the Flower run ended ({status}) without reporting an outcome",
                )
