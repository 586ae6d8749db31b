"""The daemon (`socle-agent run`): scheduled jobs, catch-up, metrics, systemd protocol.

At start it serves the metrics, tells systemd it is ready, and runs every scheduled
job whose last success is older than its last due time (the node was down). Then it
runs jobs as `schedule` says, one at a time, each in a worker thread so the main
thread can keep pinging systemd's watchdog during a long dump. SIGTERM (or SIGINT)
asks the running job to abort cleanly (a dump removes its partial files) and stops.

The watchdog reflects the job's progress, not only the daemon's: every job shows it is
alive (`JobContext.check`), and one that shows nothing for `agent.stall_seconds` is
stuck in a call that will not return. The daemon then records it as failed, mails,
asks systemd to act (`WATCHDOG=trigger`), stops pinging and exits, so systemd restarts
the agent and later jobs run again.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import signal
import threading
import time
from types import FrameType

import schedule as schedule_lib

from socle_agent.base import Progress
from socle_agent.config import Config
from socle_agent.jobs import JobResult, finish, registry, run_job
from socle_agent.mail import Mailer
from socle_agent.metrics import build_registry, start_server
from socle_agent.state import load_state
from socle_agent.systemd_notify import notify, watchdog_interval

log = logging.getLogger(__name__)
IDLE_SECONDS = 30.0
EXIT_STUCK = 70  # EX_SOFTWARE: systemd restarts the agent (Restart=on-failure)


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
        known = registry()
        jobs = load_state(self.config.agent.state_file).get("jobs", {})
        return [
            job
            for job in known
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
        """Run one job in a worker thread, pinging the watchdog while it makes progress."""
        if self.stopping.is_set():
            return
        notify(f"STATUS=running {name}")
        progress = Progress()
        started = time.time()
        worker = threading.Thread(
            target=run_job,
            args=(name, self.config),
            kwargs={"cancel": self.stopping, "progress": progress},
            name=name,
            daemon=True,
        )
        worker.start()
        stall = self.config.agent.stall_seconds
        while worker.is_alive():
            last, doing = progress.last()
            quiet = time.monotonic() - last
            if quiet > stall:
                self._stuck(name, started, quiet, doing)
                return
            self._ping()
            worker.join(timeout=min(self.watchdog or IDLE_SECONDS, 1.0))
        notify("STATUS=idle")

    def _stuck(self, name: str, started: float, quiet: float, doing: str) -> None:
        """Report a job that stopped making progress, then let systemd restart the agent."""
        error = (
            f"stuck: no progress for {quiet:.0f} s while {doing}; the agent is restarted "
            "so that later jobs run"
        )
        log.error("%s: %s", name, error)
        finish(self.config, JobResult(name, "failed", started, time.time(), error=error),
               None, Mailer(self.config.mail))
        notify(f"STATUS=stuck in {name}")
        notify("WATCHDOG=trigger")
        # Under systemd the watchdog ends the process now; run by hand, nothing would.
        time.sleep(min(self.watchdog or 1.0, 5.0))
        logging.shutdown()
        os._exit(EXIT_STUCK)

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
