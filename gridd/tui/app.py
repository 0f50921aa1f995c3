"""GriddApp: the `gridd tui` dashboard. It wires the event feed to the dashboard screen and runs the
job actions (cancel, retry, hold, release) against the broker.

Rule: the app only holds the link to the broker, the one events worker and the action workers; what
is shown lives in the screens and widgets. It imports gridd.client and gridd.protocol, never the
broker or the worker.
"""

from __future__ import annotations

from collections.abc import Callable

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.screen import Screen

from gridd.protocol.errors import GriddError
from gridd.tui.feed import EventFeed
from gridd.tui.link import BrokerLink
from gridd.tui.screens.confirm import ConfirmScreen
from gridd.tui.screens.dashboard import DashboardScreen
from gridd.tui.screens.job_detail import JobDetailScreen


class GriddApp(App[None]):
    """The dashboard for the broker at `address` (or a callable that says where it is now, asked again
    at every reconnect: the broker's port may change when it restarts)."""

    CSS_PATH = "gridd.tcss"
    TITLE = "gridd"
    ENABLE_COMMAND_PALETTE = False  # its key would crowd the footer at 80 columns
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("c", "cancel_job", "Cancel"),
        Binding("r", "control('retry')", "Retry"),
        Binding("h", "control('hold')", "Hold"),
        Binding("l", "control('release')", "Release"),
    ]

    def __init__(
        self,
        address: str | Callable[[], str],
        token: str | None,
        *,
        retry_first_s: float = 0.25,
        retry_max_s: float = 3.0,
        insecure: bool | None = None,
    ) -> None:
        super().__init__()
        self.link = BrokerLink(address, token, insecure)
        self.dashboard = DashboardScreen(self.link, self.resubscribe)
        self._feed = EventFeed(
            self.link, self.dashboard.post_message, retry_first_s=retry_first_s, retry_max_s=retry_max_s
        )

    def get_default_screen(self) -> Screen[None]:
        return self.dashboard

    def on_mount(self) -> None:
        self.follow_events()

    @work(exclusive=True, group="events", exit_on_error=False)
    async def follow_events(self) -> None:
        """The one reader of the event stream; it reconnects by itself and returns only when cancelled."""
        await self._feed.run()

    def resubscribe(self) -> None:
        """Take a fresh snapshot: start the events worker again (exclusive: the old one is cancelled)."""
        self.follow_events()

    def selected_job_id(self) -> str | None:
        """The job the keys act on: the one in the detail view, else the jobs table's cursor row."""
        screen = self.screen
        if isinstance(screen, JobDetailScreen):
            return screen.job_id
        if isinstance(screen, DashboardScreen):
            return screen.selected_job_id()
        return None

    def action_cancel_job(self) -> None:
        """Cancel the selected job, after a confirmation."""
        job_id = self.selected_job_id()
        if job_id is None:
            self.notify("no job selected", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.control_job("cancel", job_id)

        self.push_screen(ConfirmScreen(f"Cancel job {job_id}? Its processes are stopped."), answered)

    def action_control(self, action: str) -> None:
        """Retry, hold or release the selected job."""
        job_id = self.selected_job_id()
        if job_id is None:
            self.notify("no job selected", severity="warning")
            return
        self.control_job(action, job_id)

    @work(group="control", exit_on_error=False)
    async def control_job(self, action: str, job_id: str) -> None:
        """Ask the broker; the table changes when the event comes back, the outcome shows as a toast."""
        try:
            outcomes = await self.link.require().control(action, [job_id])
        except GriddError as exc:
            self.notify(str(exc), severity="error")
            return
        for outcome in outcomes:
            if outcome.code:
                self.notify(outcome.message, severity="error")
            else:
                self.notify(f"job {outcome.job_id}: {action} done (now {outcome.state})")
