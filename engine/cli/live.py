"""The live per-step table ``antibunch run`` shows on a terminal."""
from __future__ import annotations

import time


class LiveTable:
    """Live per-node table: messages, rates, queue depth, dropped tap messages."""

    def __init__(self, graph):
        from rich.console import Console
        from rich.live import Live

        self.graph = graph
        self.console = Console(highlight=False)
        self.live = Live(console=self.console, refresh_per_second=4, transient=False)
        self.t0 = time.monotonic()
        self.prev = {}
        self._last = 0.0

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        return self.live.__exit__(*exc)

    def print_line(self, step, text):
        self.live.console.print(text, markup=False, highlight=False)

    def update(self, runner):
        now = time.monotonic()
        if now - self._last < 0.25:
            return
        self._last = now
        self.live.update(self.render(runner))

    def render(self, runner):
        from rich.table import Table

        edges = {}
        for s, st in runner.stats.items():
            for eid, n in (st.get("edge_sent") or {}).items():
                edges.setdefault(eid, [0, 0])[0] = n
            for eid, n in (st.get("edge_recv") or {}).items():
                edges.setdefault(eid, [0, 0])[1] = n
        started = getattr(runner, "started_at", None)  # the run's one clock: from the sources' start
        if started is None:
            when = f"starting ({time.monotonic() - self.t0:.1f} s)"
        else:
            when = f"{time.monotonic() - started:.1f} s of acquisition"
        t = Table(title=f"{self.graph.name} — {when}")
        for col in ("step", "state", "received", "sent", "msg/s", "queue", "tap dropped", "errors"):
            t.add_column(col, justify="left" if col in ("step", "state") else "right")
        for s in self.graph.steps:
            st = runner.stats.get(s, {})
            sent = st.get("sent", 0)
            prev_sent, prev_t = self.prev.get(s, (0, self.t0))
            rate = (sent - prev_sent) / max(time.monotonic() - prev_t, 1e-3)
            self.prev[s] = (sent, time.monotonic())
            queue = sum(max(v[0] - v[1], 0) for eid, v in edges.items() if eid.split("->")[1].startswith(s + "."))
            t.add_row(s, runner.step_state.get(s, "?"), str(st.get("received", 0)), str(sent), f"{rate:.1f}",
                      str(queue), str(st.get("tap_dropped", 0)),
                      str(st.get("wire_errors", 0) + (1 if s in runner.errors else 0)))
        return t
