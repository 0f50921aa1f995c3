"""One job in full: its command and state, every finished attempt, and the tails of its output.

Rule: it reads the job when opened and again when the dashboard sees an event for it (`reload`); the
app's cancel/retry/hold/release keys act on this job while the screen is shown.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer

from gridd.protocol.errors import ConnectionLost, Forbidden, GriddError
from gridd.tui.formatting import tail
from gridd.tui.link import BrokerLink
from gridd.tui.messages import JobDetailLoaded
from gridd.tui.widgets.attempts_table import AttemptsTable
from gridd.tui.widgets.job_summary import JobSummary
from gridd.tui.widgets.output_tail import OutputTail


class JobDetailScreen(Screen[None]):
    """The detail of job `job_id`."""

    BINDINGS = [Binding("escape,backspace", "app.pop_screen", "Back")]

    def __init__(self, link: BrokerLink, job_id: str) -> None:
        super().__init__(id="detail")
        self._link = link
        self.job_id = job_id

    def compose(self) -> ComposeResult:
        yield JobSummary(id="summary")
        yield AttemptsTable(id="attempts")
        with Horizontal(id="outputs"):
            with VerticalScroll(id="stdout-box") as box:
                box.border_title = "stdout (tail)"
                yield OutputTail(id="stdout")
            with VerticalScroll(id="stderr-box") as box:
                box.border_title = "stderr (tail)"
                yield OutputTail(id="stderr")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.reload()

    @work(exclusive=True, group="detail", exit_on_error=False)
    async def reload(self) -> None:
        """Read the job, its attempts and both output tails."""
        try:
            client = self._link.require()
            job, attempts = await client.show(self.job_id)
            outputs = {}
            for stream in ("stdout", "stderr"):
                try:
                    data, truncated = await client.output(self.job_id, stream)
                except Forbidden as exc:  # a read token sees the job, never its output
                    outputs[stream] = f"({exc})"
                    continue
                outputs[stream] = tail(data, truncated)
        except ConnectionLost as exc:
            self.notify(str(exc), severity="warning")
            return
        except GriddError as exc:
            self.notify(str(exc), severity="error")
            return
        self.post_message(JobDetailLoaded(job, attempts, outputs["stdout"], outputs["stderr"]))

    @on(JobDetailLoaded)
    def _loaded(self, message: JobDetailLoaded) -> None:
        self.query_one(JobSummary).show(message.job)
        self.query_one(AttemptsTable).show(message.attempts)
        self.query_one("#stdout", OutputTail).show(message.stdout)
        self.query_one("#stderr", OutputTail).show(message.stderr)
        self.sub_title = f"job {message.job.id}"
