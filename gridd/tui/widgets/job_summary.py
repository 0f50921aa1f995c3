"""The head of the job detail view: command, state, attempts, worker, exit status, times, reason."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import Static

from gridd.printable import printable
from gridd.protocol.messages import JobView
from gridd.tui.formatting import clock_time, command_line, exit_text


class JobSummary(Static):
    """What `gridd show` prints, laid out for the screen; `job` is the last one shown."""

    DEFAULT_CSS = """
    JobSummary { height: auto; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("loading…", id=id, markup=False)
        self.job: JobView | None = None

    def show(self, job: JobView) -> None:
        """Render one job."""
        self.job = job
        text = Text()
        text.append(f"job {job.id}  ", style="bold")
        text.append(job.state, style="bold reverse")
        where = f"queue {printable(job.queue)} · owner {printable(job.owner or '-')} · priority {job.priority}"
        where += f" · attempts {job.attempts}/{job.max_attempts}"
        text.append(f"  {where} · worker {printable(job.worker or '-')} · exit {exit_text(job.exit_code)}\n")
        text.append(f"command: {command_line(job.argv, 1000)}\n")
        times = f"submitted {clock_time(job.submitted_ms)} · started {clock_time(job.started_ms)}"
        text.append(f"{times} · finished {clock_time(job.finished_ms)}")
        if job.start_at_ms is not None:  # submit --at/--in: not started before then
            text.append(" · start at " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.start_at_ms / 1000)))
        if job.timeout_s is not None:
            text.append(f" · timeout {job.timeout_s:g}s")
        text.append(f" · output {job.stdout_bytes} B out, {job.stderr_bytes} B err")
        if job.reason:
            text.append(f"\nreason: {printable(job.reason)}")
        self.update(text)
