"""Live view of a scan in the terminal (rich).

``LiveView(frames=7)`` shows, while the scan runs:

- progress: pixels completed (all frames) of ``ny·nx·frames``, the frame of the latest
  completed pixel (from the pixel count, so it is true whatever the source's frame clock says),
  elapsed time since the sources started (the moment the executor started them, the same moment
  the run summary's "in N s" counts from; the graph's start-up — kernel compilation, model
  loading — is not part of it) and the remaining time, estimated from the
  pixel rate since the first completed pixel once ``eta_after_pixels`` more pixels and at least
  2 s of data are in (before that it reads "estimating");
- rates: pixels/s arriving, images/s, and — when the ``g2`` input is connected — the
  estimator's own throughput (pixels per second of its compute time, from
  ``Estimates.compute_s``) and the share of dark pixels;
- the image being built, drawn with half-block characters (one character = two pixels
  stacked, foreground = upper, background = lower), at most 64×64 pixels (larger scans are
  block-averaged), redrawn at most ``refresh_hz`` (≤ 8) times a second. ``show='both'`` draws
  intensity and G2 side by side; ``'cycle'`` switches between intensity, G2 and G2_direct
  every ``cycle_s`` seconds; ``'intensity'``/``'G2'``/``'G2_direct'`` draw one.

When stdout is not a terminal (a log file, CI, a pipe — also every node of the ``processes``
executor, whose output the runner relays) or another live display already owns it (the
runner's per-node table), it prints a plain one-line progress summary at most every
``plain_every_s`` seconds, plain-text thumbnails of intensity and G2_direct (a 10-level
character ramp) each time a frame is complete (``ascii_per_frame``: "after frame k" once
k·ny·nx pixel visits are done) and a final summary instead. To watch the image being built, run
the graph in one process without the runner's table::

    antibunch run scan_cnn --executor threads --no-live

Inputs: ``image`` (Image), optional ``hist`` (PixelHistograms, for progress before the first
image) and ``g2`` (Estimates, for the estimator's rate).

Example::

    g.add("live", LiveView(frames=7), image=img, hist=hist, g2=g2)
"""
from __future__ import annotations

import sys
import time

import numpy as np

from engine.messages import Estimates, Histogram, Image, PixelHistograms
from engine.node import In, Param, Sink

from .output import FINISHED, outcome

MAX_SIZE = 64


def downsample(a, max_size=MAX_SIZE):
    """Block-average (NaN-aware) so that both sides are <= max_size."""
    a = np.asarray(a, float)
    f = int(np.ceil(max(a.shape) / max_size)) if max(a.shape) > max_size else 1
    if f == 1:
        return a
    ny, nx = (a.shape[0] + f - 1) // f, (a.shape[1] + f - 1) // f
    pad = np.full((ny * f, nx * f), np.nan)
    pad[:a.shape[0], :a.shape[1]] = a
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(pad.reshape(ny, f, nx, f), axis=(1, 3))


def _colors(a, cmap="magma"):
    from matplotlib import colormaps

    finite = np.isfinite(a)
    rgb = np.zeros(a.shape + (3,), np.uint8)
    if finite.any():
        lo, hi = np.nanpercentile(a, 1), np.nanpercentile(a, 99.5)
        if not hi > lo:
            hi = lo + 1.0
        x = np.clip((np.where(finite, a, lo) - lo) / (hi - lo), 0, 1)
        rgb = (colormaps[cmap](x)[..., :3] * 255).astype(np.uint8)
    rgb[~finite] = (40, 40, 40)
    return rgb


def halfblock_lines(a, cmap="magma", max_size=MAX_SIZE):
    """The image as rich ``Text`` lines of '▀' (two pixel rows per line)."""
    from rich.style import Style
    from rich.text import Text

    a = downsample(a, max_size)
    rgb = _colors(a, cmap)
    ny, nx = a.shape
    lines = []
    for r in range(0, ny, 2):
        t = Text()
        for c in range(nx):
            top = rgb[r, c]
            bot = rgb[r + 1, c] if r + 1 < ny else (0, 0, 0)
            t.append("▀", Style(color=f"rgb({top[0]},{top[1]},{top[2]})",
                                bgcolor=f"rgb({bot[0]},{bot[1]},{bot[2]})"))
        lines.append(t)
    return lines


def _other_live_display() -> bool:
    """True when another rich Live display is refreshing in this process (e.g. the runner's
    per-node table under the threads executor); two live displays would garble the terminal."""
    import threading

    return any(type(t).__name__ == "_RefreshThread" for t in threading.enumerate())


ASCII_RAMP = " .:-=+*#%@"


def ascii_lines(a, max_cols=32):
    """The image as plain-text lines (10-level ramp, two pixel rows per line, ≤ max_cols wide)."""
    a = downsample(np.asarray(a, float), max_cols)
    if a.shape[0] % 2:
        a = np.vstack([a, np.full((1, a.shape[1]), np.nan)])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        a = np.nanmean(a.reshape(a.shape[0] // 2, 2, a.shape[1]), axis=1)
    finite = np.isfinite(a)
    lo, hi = (np.nanpercentile(a, 1), np.nanpercentile(a, 99.5)) if finite.any() else (0.0, 1.0)
    x = np.clip((np.where(finite, a, lo) - lo) / ((hi - lo) or 1.0), 0, 1)
    idx = np.round(x * (len(ASCII_RAMP) - 1)).astype(int)
    return ["".join(ASCII_RAMP[i] if f else "?" for i, f in zip(row, frow)) for row, frow in zip(idx, finite)]


def _stop_live(sink):
    """Stop ``sink``'s rich Live display, if it has one, and forget it."""
    if getattr(sink, "_live", None) is not None:
        try:
            sink._live.stop()
        finally:
            sink._live = None


def _fmt_s(s):
    if s is None or not np.isfinite(s):
        return "?"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class LiveView(Sink):
    """Terminal live view of progress, rates and the image (see module docstring)."""

    owns_terminal = True  # the processes executor hands it the real terminal (no piping, no runner table)

    image = In(Image, doc="image snapshots")
    hist = In(PixelHistograms, optional=True, doc="pixel histograms (progress)")
    g2 = In(Estimates, optional=True, doc="estimates (estimator rate)")

    frames = Param(int, default=1, min=1, doc="frames in the scan (for the remaining time)")
    show = Param(str, default="both", choices=("both", "cycle", "intensity", "G2", "G2_direct"))
    refresh_hz = Param(float, default=8.0, min=0.1, max=8.0, unit="Hz", doc="max redraw rate")
    cycle_s = Param(float, default=3.0, min=0.5, unit="s", doc="'cycle': seconds per image")
    plain_every_s = Param(float, default=5.0, min=0.0, unit="s", doc="non-terminal: seconds between lines")
    title = Param(str, default="antibunch", doc="panel title")
    force_terminal = Param(bool, default=None, optional=True, doc="override terminal detection (tests)")
    ascii_per_frame = Param(bool, default=True, doc="non-terminal: print text thumbnails after each frame")
    eta_after_pixels = Param(int, default=4, min=1, unit="pixels",
                             doc="pixels completed after the first one before a remaining time is shown")

    def reset(self):
        self._t0 = None  # the stream's start: first descriptor or message (not the start-up)
        self._t_run = None  # the sources' start told by the executor (``run_started``), on our clock
        self.run_started = None
        self._first_px = None  # (time, n_done) of the first progress report: the ETA's reference
        self._end = None  # (time, status) once finished
        self._ascii_frame = 0
        self._img = None
        self._n_done = 0
        self._shape = None
        self._est_pixels = 0
        self._est_compute_s = 0.0
        self._est_dark = 0
        self._n_images = 0
        self._last_draw = 0.0
        self._last_plain = 0.0
        self._live = None
        self._console = None
        tty = self.force_terminal if self.force_terminal is not None else sys.stdout.isatty()
        if tty and self.force_terminal is None and _other_live_display():
            tty = False  # the runner's live table owns the terminal: print plain lines above it
        self._tty = bool(tty)
        self.lines_printed = 0

    def _start_live(self):
        from rich.console import Console
        from rich.live import Live

        self._console = Console(force_terminal=True) if self.force_terminal else Console()
        self._live = Live(self.render(), console=self._console, refresh_per_second=min(self.refresh_hz, 8.0),
                          transient=False, auto_refresh=False)
        self._live.start()

    # -- inputs
    def on_descriptor(self, port, desc):
        if self._t0 is None:
            self._t0 = time.monotonic()

    def _start(self):
        """When the scan's clock started (time.monotonic): the executor's start of the sources
        (``run_started``, wall clock) when told, else the first descriptor or message seen."""
        t = self.run_started
        if t is not None and self._t_run is None:
            self._t_run = time.monotonic() - max(time.time() - float(t), 0.0)
        return self._t_run if self._t_run is not None else self._t0

    def frames_done(self):
        """Complete frames: pixel visits done // pixels per frame (0 before the shape is known)."""
        if not self._shape:
            return 0
        return min(self._n_done // (self._shape[0] * self._shape[1]), self.frames)

    def frame_now(self):
        """1-based frame of the latest completed pixel visit (1 before any)."""
        if not self._shape or self._n_done <= 0:
            return 1
        npix = self._shape[0] * self._shape[1]
        return min((self._n_done - 1) // npix + 1, self.frames)

    def _progress_seen(self):
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        if self._first_px is None and self._n_done > 0:
            self._first_px = (now, self._n_done)

    def process(self, msg, port):
        if port == "image":
            self._img = msg
            self._n_images += 1
            self._n_done = max(self._n_done, int(msg.n_done))
            self._shape = msg.mask.shape
        elif port == "hist":
            self._n_done = max(self._n_done, int(msg.n_done))
            self._shape = tuple(int(v) for v in msg.shape)
        elif port == "g2":
            self._est_pixels += len(msg.pixel)
            self._est_compute_s += float(msg.compute_s or 0.0)
            self._est_dark += int(np.count_nonzero(np.asarray(msg.flags) & 1))
        self._progress_seen()
        self._tick()
        return ()

    def _tick(self, force=False):
        now = time.monotonic()
        if self._tty:
            if force or now - self._last_draw >= 1.0 / self.refresh_hz:
                self._last_draw = now
                if self._live is None:
                    self._start_live()
                self._live.update(self.render(), refresh=True)
        elif force or (now - self._last_plain >= self.plain_every_s):
            self._last_plain = now
            print(self.plain_line(), flush=True)
            self.lines_printed += 1
        done = self.frames_done()
        if not self._tty and self.ascii_per_frame and self._img is not None and done > self._ascii_frame:
            self._ascii_frame = done
            # the estimates (CNN batches) may lag the completed pixel visits: say so, not a silent '?'
            pending = int(np.sum(~np.asarray(self._img.mask, bool)))
            note = f" (estimates pending for {pending} pixels, shown as '?')" if pending else ""
            self.print_ascii(f"after frame {done}{note}")

    def print_ascii(self, label):
        """Plain-text thumbnails of intensity and G2_direct (or G2) side by side."""
        img = self._img
        names = [n for n in ("intensity", "G2_direct", "G2") if n in img.images][:2]
        if not names:  # nothing to draw (a run stopped before its first image): no empty header
            return
        cols = [ascii_lines(img.images[n]) for n in names]
        w = max(len(c[0]) for c in cols) if cols else 0
        print(f"[{self.title}] {label}:", flush=True)
        print(f"[{self.title}]   " + " | ".join(n.ljust(w) for n in names), flush=True)
        for row in zip(*cols):
            print(f"[{self.title}]   " + " | ".join(r.ljust(w) for r in row), flush=True)

    # -- text
    def progress(self):
        """(elapsed s since the stream started, total pixel visits or None, remaining s or None)."""
        now = self._end[0] if self._end else time.monotonic()
        t0 = self._start()
        el = max(now - t0, 0.0) if t0 is not None else 0.0
        total = (self._shape[0] * self._shape[1] * self.frames) if self._shape else None
        rem = None
        if total and self._first_px is not None and self._end is None:
            t1, n1 = self._first_px
            done_since, dt = self._n_done - n1, now - t1
            if done_since >= self.eta_after_pixels and dt >= 2.0:
                rem = max(total - self._n_done, 0) * dt / done_since
        return el, total, rem

    def _remaining_text(self, rem):
        if self._end is not None:
            return ""
        return f", remaining {_fmt_s(rem)}" if rem is not None else ", remaining: estimating"

    def plain_line(self):
        el, total, rem = self.progress()
        s = f"[{self.title}] pixels {self._n_done}" + (f"/{total}" if total else "")
        s += f", frame {self.frame_now()}/{self.frames}, elapsed {_fmt_s(el)}{self._remaining_text(rem)}"
        if el > 0:
            s += f", {self._n_done / el:.1f} px/s"
        if self._est_compute_s > 0:
            s += f", estimator {self._est_pixels / self._est_compute_s:.0f} px/s of compute"
        img = self._img
        if img is not None and "intensity" in img.images:
            I = img.images["intensity"]
            if np.isfinite(I).any():
                s += f", intensity max {np.nanmax(I) / 1e3:.1f} kcps"
        return s

    def _which(self):
        if self.show == "both":
            return ["intensity", "G2"]
        if self.show == "cycle":
            names = ["intensity", "G2", "G2_direct"]
            return [names[int((time.monotonic() - (self._start() or 0.0)) // self.cycle_s) % len(names)]]
        return [self.show]

    def render(self):
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        el, total, rem = self.progress()
        head = Text()
        frac = self._n_done / total if total else 0.0
        bar_w = 30
        head.append("█" * int(frac * bar_w) + "░" * (bar_w - int(frac * bar_w)), style="cyan")
        head.append(f" {self._n_done}" + (f"/{total}" if total else "") + " pixels")
        head.append(f"  frame {self.frame_now()}/{self.frames}  elapsed {_fmt_s(el)}"
                    + self._remaining_text(rem).replace(",", " "))
        rates = Text(f"{self._n_done / el if el > 0 else 0:.1f} pixels/s, {self._n_images} images", style="dim")
        if self._est_compute_s > 0:
            rates.append(f", estimator {self._est_pixels / self._est_compute_s:.0f} px/s of compute"
                         f", dark {self._est_dark}/{self._est_pixels}", style="dim")
        parts = [head, rates]
        img = self._img
        if img is not None:
            grid = Table.grid(padding=(0, 2))
            cols = []
            for name in self._which():
                a = img.images.get(name)
                if a is None:
                    continue
                cell = Text(f"{name}\n", style="bold")
                for line in halfblock_lines(a, "magma"):
                    cell.append_text(line)
                    cell.append("\n")
                cols.append(cell)
            for _ in cols:
                grid.add_column()
            if cols:
                grid.add_row(*cols)
                parts.append(grid)
        title = self.title if self._end is None else f"{self.title} — {self._end[1]}"
        return Panel(Group(*parts), title=title, expand=False)

    def final_line(self):
        """What the run did, in one line: 'finished', 'interrupted' or 'failed', with true totals."""
        status = self._end[1] if self._end else "running"
        el, total, _ = self.progress()
        if self._n_done == 0 and self.run_started is None and status != FINISHED:
            return f"[{self.title}] {status} before the scan started: no pixel completed"
        if self._n_done == 0:
            what = "no pixel completed"
        else:
            what = f"pixels {self._n_done}" + (f"/{total}" if total else "")
            if self._shape:
                what += f" ({self._n_done / (self._shape[0] * self._shape[1]):.3g} of {self.frames} frames)"
        line = f"[{self.title}] {status}: {what} in {_fmt_s(el)}"
        if el > 0 and self._n_done:
            line += f", {self._n_done / el:.1f} px/s"
        if status != FINISHED and total and self._n_done < total:
            line += " — partial scan"
        return line

    def finish(self):
        if self._t0 is None:
            self._t0 = time.monotonic()
        self._end = (time.monotonic(), outcome(self))
        if self._tty:
            self._tick(force=True)
        _stop_live(self)
        if not self._tty:
            print(self.final_line(), flush=True)
            if self.ascii_per_frame and self._img is not None:
                self.print_ascii("final")
        return ()

    def close(self):
        _stop_live(self)


class LiveHistogram(Sink):
    """Live g2(τ) of one spot (HBT alignment): the normalised histogram and its fit.

    Input ``hist`` (Histogram snapshots, e.g. from ``Correlation``), optional ``fit``
    (Estimates of one histogram, e.g. ``LMFit``: g2(0) ± error, t1/t2 from ``extra``). The
    histogram is normalised to g2 with the singles, ``counts / (N1·N2·Δ/T)`` (T = covered time),
    and drawn as vertical bars of block characters (``width`` columns, bins averaged,
    ``height`` rows; a dotted line at g2 = 1), at most ``refresh_hz`` per second. Without a
    terminal it prints one plain line per ``plain_every_s``: rates, events, g2 near zero and
    the fitted g2(0).

    Example::

        g.add("view", LiveHistogram(), hist=corr, fit=fit)
    """

    owns_terminal = True

    hist = In(Histogram, doc="cumulative histogram snapshots")
    fit = In(Estimates, optional=True, doc="fit of the histogram (one entry)")

    width = Param(int, default=80, min=10, max=200, doc="columns")
    height = Param(int, default=12, min=3, max=60, doc="rows")
    refresh_hz = Param(float, default=4.0, min=0.1, max=8.0, unit="Hz")
    plain_every_s = Param(float, default=2.0, min=0.0, unit="s")
    title = Param(str, default="g2(τ)")
    force_terminal = Param(bool, default=None, optional=True)

    def reset(self):
        self._h = None
        self._fit = None
        self._live = None
        self._last = 0.0
        tty = self.force_terminal if self.force_terminal is not None else sys.stdout.isatty()
        if tty and self.force_terminal is None and _other_live_display():
            tty = False
        self._tty = bool(tty)
        self.lines_printed = 0

    def process(self, msg, port):
        if port == "hist":
            self._h = msg
        else:
            self._fit = msg
        now = time.monotonic()
        if self._tty and now - self._last >= 1.0 / self.refresh_hz:
            self._last = now
            if self._live is None:
                from rich.console import Console
                from rich.live import Live

                self._live = Live(self.render(), console=Console(), auto_refresh=False)
                self._live.start()
            self._live.update(self.render(), refresh=True)
        elif not self._tty and now - self._last >= self.plain_every_s:
            self._last = now
            print(self.plain_line(), flush=True)
            self.lines_printed += 1
        return ()

    def normalised(self):
        """(lag_ns, g2) of the latest histogram, or None."""
        h = self._h
        if h is None:
            return None
        counts = np.asarray(h.counts, float)
        T = (h.meta or {}).get("covered_ps") or (h.t_end_ps - h.t_begin_ps)
        T = float(T) * 1e-12
        s = np.asarray(h.singles, float) if h.singles is not None else np.zeros(2)
        bw = float(h.binwidth_ps) * 1e-12
        norm = s[0] * s[1] * bw / T if T > 0 and len(s) >= 2 else 0.0
        g = counts / norm if norm > 0 else counts / max(counts.mean(), 1e-300)
        return np.asarray(h.lag_ps, float) * 1e-3, g, T, s

    def _fit_text(self):
        f = self._fit
        if f is None or not len(f.g2_0):
            return ""
        txt = f"fit ({f.method}): g2(0) = {f.g2_0[0]:.3f} ± {f.g2_0_err[0]:.3f}"
        ex = f.extra or {}
        if "t1_ps" in ex:
            txt += f", t1 = {np.asarray(ex['t1_ps'])[0] / 1e3:.1f} ns"
        if "t2_ps" in ex:
            txt += f", t2 = {np.asarray(ex['t2_ps'])[0] / 1e3:.0f} ns"
        n = int(np.asarray(f.n_events)[0]) if f.n_events is not None and len(f.n_events) else None
        if self._h is not None and n is not None and n != int(np.sum(self._h.counts)):
            # the fit of this histogram has not arrived yet: say which data the numbers belong to
            txt += f" (fit of the earlier snapshot of {n} events)"
        return txt

    def plain_line(self):
        r = self.normalised()
        if r is None:
            return f"[{self.title}] waiting for data"
        lag, g, T, s = r
        z = np.abs(lag) <= max(np.diff(lag).mean() * 1.5, 1e-9)
        txt = (f"[{self.title}] T {T:.1f} s, rates {s[0] / T / 1e3:.1f} / {s[1] / T / 1e3:.1f} kcps, "
               f"{int(np.sum(self._h.counts))} events, g2 at zero lag (raw bins) {np.mean(g[z]):.2f}")
        f = self._fit_text()
        return txt + (", " + f if f else "")

    def render(self):
        from rich.console import Group
        from rich.panel import Panel
        from rich.text import Text

        r = self.normalised()
        if r is None:
            return Panel(Text("waiting for data"), title=self.title)
        lag, g, T, s = r
        cols = min(self.width, len(g))
        edges = np.linspace(0, len(g), cols + 1).astype(int)
        v = np.array([np.mean(g[a:b]) for a, b in zip(edges[:-1], edges[1:])])
        top = max(1.5, float(np.nanmax(v)) if np.isfinite(v).any() else 1.5)
        levels = " ▁▂▃▄▅▆▇█"
        rows = []
        one = int(round(1.0 / top * self.height * 8))
        for r_ in range(self.height - 1, -1, -1):
            t = Text()
            for x in v:
                u = int(round(max(x, 0) / top * self.height * 8)) - r_ * 8
                ch = levels[min(max(u, 0), 8)]
                if ch == " " and r_ * 8 <= one < (r_ + 1) * 8:
                    ch = "·"
                t.append(ch, style="cyan" if x < 1 else "magenta")
            rows.append(t)
        axis = Text(f"{lag[0]:.0f} ns".ljust(cols // 2) + f"{lag[-1]:.0f} ns".rjust(cols - cols // 2), style="dim")
        info = Text(self.plain_line().split("] ", 1)[-1], style="bold")
        return Panel(Group(info, *rows, axis), title=f"{self.title} (max {top:.2f}, · = 1)", expand=False)

    def finish(self):
        if self._live is not None:
            self._live.update(self.render(), refresh=True)
            self._live.stop()
            self._live = None
        else:
            print(self.plain_line(), flush=True)
        return ()

    def close(self):
        _stop_live(self)
