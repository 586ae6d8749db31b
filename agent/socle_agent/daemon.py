"""The daemon (`socle-agent run`): scheduled jobs, catch-up, metrics, systemd protocol.

At start it serves the metrics, tells systemd it is ready, and runs every scheduled
job whose last success is older than its last due time (the node was down). Then it
runs jobs as `schedule` says, one at a time, each in a worker thread so the main
thread can keep pinging systemd's watchdog during a long dump. SIGTERM (or SIGINT)
asks the running job to abort cleanly (a dump removes its partial files) and stops.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import signal
import threading
from types import FrameType

import schedule as schedule_lib

from socle_agent.config import JOB_NAMES, Config
from socle_agent.jobs import registry, run_job
from socle_agent.metrics import build_registry, start_server
from socle_agent.state import load_state
from socle_agent.systemd_notify import notify, watchdog_interval

log = logging.getLogger(__name__)
IDLE_SECONDS = 30.0


class Daemon:
    """One run of the agent's daemon for a validated configuration."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stopping = threading.Event()
        self.scheduler = schedule_lib.Scheduler()
        self.watchdog = watchdog_interval()

    def missing_jobs(self) -> list[str]:
        """Scheduled jobs that no module of this agent provides."""
        known = registry()
        return [job for job in self.config.schedule if job not in known]

    def due_at_start(self, now: dt.datetime | None = None) -> list[str]:
        """Scheduled jobs whose last success is older than their last due time."""
        now = now or dt.datetime.now()
        jobs = load_state(self.config.agent.state_file).get("jobs", {})
        return [
            job
            for job in JOB_NAMES
            if job in self.config.schedule
            and self.config.schedule[job].missed(jobs.get(job, {}).get("last_success"), now)
        ]

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        self.stopping.set()

    def _ping(self) -> None:
        if self.watchdog is not None:
            notify("WATCHDOG=1")

    def run_job(self, name: str) -> None:
        """Run one job in a worker thread, pinging the watchdog while it works."""
        if self.stopping.is_set():
            return
        notify(f"STATUS=running {name}")
        worker = threading.Thread(
            target=run_job, args=(name, self.config), kwargs={"cancel": self.stopping}, name=name
        )
        worker.start()
        while worker.is_alive():
            self._ping()
            worker.join(timeout=self.watchdog or IDLE_SECONDS)
        notify("STATUS=idle")

    def run(self) -> int:
        """Serve until SIGTERM; returns the exit code."""
        missing = self.missing_jobs()
        if missing:
            for job in missing:
                log.error("schedule.%s: this agent has no such job", job)
            return 2
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        server = None
        if self.config.metrics.enabled:
            server, _ = start_server(self.config.metrics, build_registry(self.config))
            log.info(
                "metrics on http://%s:%d/metrics",
                self.config.metrics.listen,
                server.server_port,
            )
        for job, when in self.config.schedule.items():
            when.install(self.scheduler, functools.partial(self.run_job, job))
        notify("READY=1")
        notify("STATUS=starting")
        try:
            for job in self.due_at_start():
                log.info("%s: missed while the agent was down, running now", job)
                self.run_job(job)
            while not self.stopping.is_set():
                self.scheduler.run_pending()
                self._ping()
                idle = self.scheduler.idle_seconds
                wait = IDLE_SECONDS if idle is None else max(0.0, min(idle, IDLE_SECONDS))
                if self.watchdog is not None:
                    wait = min(wait, self.watchdog)
                self.stopping.wait(wait)
        finally:
            notify("STOPPING=1")
            if server is not None:
                server.shutdown()
                server.server_close()
        log.info("stopped")
        return 0
