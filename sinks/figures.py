"""Figure sink: a PNG like the paper's Fig. 3-4, and the final resolution table.

``FigureSink(path, every_n_pixels=None, pixel_nm=24.2, emitters_nm=None)`` renders (matplotlib,
Agg backend, no display needed) from the latest :class:`~engine.messages.Image` snapshot:

- intensity (counts/s), g2(0) map, G2 = I²(1 − g2(0)) and G2_direct images (nm axes, scene
  origin at the field centre as in :mod:`sources.simulator`), emitter positions marked;
- cross-sections through an emitter (perpendicular to the pair axis) of intensity,
  intensity², G2 and G2_direct, normalised, with their Gaussian fits and FWHM values;
- the profile along the pair axis (two-point resolvability, dip values in the legend);
- one example histogram (the pixel with most events) with a fit of the bin-averaged
  three-level model and the estimator's g2(0) for that pixel.

It writes the PNG at the end of the stream and, with ``every_n_pixels``, whenever that many
more pixels have been completed. The title says how much of the scan the figure shows
(pixel visits done of ``ny·nx·frames``, and frames); a figure of an incomplete scan — a render
while the scan runs, a run interrupted (Ctrl-C, SIGTERM, a duration limit) or failed — is
marked **PARTIAL** in red with the reason, and the PNG's text metadata carry
``antibunch_status`` ('finished', 'interrupted', 'failed' or 'running') and the pixel visits.
Colour bars carry the images' units (``Image.units``: counts/s, counts²/s², "normalised" for
dimensionless maps). At the end it also prints the resolution table
(:func:`nodes.physics.resolution.summary_table`: FWHM of intensity, intensity², G2, G2_direct (G3),
narrowing ratios, pair dip and verdict) unless ``print_summary=False``, and stores it in
``self.summary`` / ``self.analysis``.

Emitter positions: ``emitters_nm`` [(x, y), ...] in scene coordinates (nm from the field
centre) when known (simulations), else the brightest maxima of the smoothed G2_direct image.

Example::

    g.add("figure", FigureSink("scan.png", emitters_nm=[(-125, 0), (125, 0)]), image=img, hist=hist, g2=g2)
"""
from __future__ import annotations

import numpy as np

from engine.messages import EST_OUTSIDE_PRIOR, Estimates, Image, PixelHistograms
from engine.node import REQUIRED, In, Param, Sink

from .output import FINISHED, atomic_write, check_output_path, outcome


def unit_label(unit: str) -> str:
    """'counts^2/s^2' -> 'counts²/s²'; '1' (dimensionless) -> 'normalised'; '' -> ''."""
    if unit in ("1", "normalised", "normalized"):
        return "normalised"
    return unit.replace("^2", "²").replace("^3", "³")


def headline(n_done, shape, frames, status):
    """(scan text, partial text or None) for a figure of ``n_done`` pixel visits.

    ``status``: 'finished', 'interrupted', 'failed', 'running' (a render while the scan runs) or
    'unfinished' (a file whose run never recorded its end).
    """
    n_px = int(shape[0]) * int(shape[1])
    done = int(n_done)
    f_done = done / n_px if n_px else 0.0
    if frames:
        total = n_px * int(frames)
        scan = f"{done}/{total} pixel visits ({f_done:.3g} of {int(frames)} frames)"
    else:
        total = None
        scan = f"{done} pixel visits ({f_done:.3g} frames of {n_px} pixels)"
    why = {"interrupted": "run interrupted", "failed": "run failed", "running": "scan in progress",
           "unfinished": "the run never ended (still running, or killed)"}.get(status)
    if why is None and total is not None and done < total:
        why = "scan incomplete"
    partial = None
    if why is not None:
        partial = f"PARTIAL — {why}: {done}" + (f" of {total}" if total else "") + " pixel visits"
    return scan, partial


def emitters_to_px(emitters_nm, shape, pixel_nm):
    """Scene positions (x, y) nm -> (row, col) pixels (pixel centres at (i − (n−1)/2)·pixel_nm)."""
    ny, nx = shape
    return [(y / pixel_nm + (ny - 1) / 2, x / pixel_nm + (nx - 1) / 2) for x, y in emitters_nm]


class FigureSink(Sink):
    """Paper-style PNG of the scan and the final resolution table (see module docstring)."""

    image = In(Image, doc="image snapshots from ImageAssembler")
    hist = In(PixelHistograms, optional=True, doc="per-pixel histograms (example histogram panel)")
    g2 = In(Estimates, optional=True, doc="per-pixel estimates (example pixel's g2(0))")

    path = Param(str, doc="output PNG")
    every_n_pixels = Param(int, default=None, optional=True, min=1, unit="pixels",
                           doc="also render whenever this many more pixels are done")
    pixel_nm = Param(float, default=24.2, min=1e-6, unit="nm", doc="pixel pitch (axes, FWHM)")
    emitters_nm = Param(tuple, default=None, optional=True, doc="known emitter positions ((x, y), ...) in nm")
    n_emitters = Param(int, default=2, min=1, doc="emitters to look for when positions are not given")
    title = Param(str, default="", doc="figure title")
    print_summary = Param(bool, default=True, doc="print the resolution table at the end")
    dpi = Param(int, default=110, min=30)
    frames = Param(int, default=None, optional=True, min=1,
                   doc="frames of the scan (default: the graph's 'frames' parameter, if any)")
    overwrite = Param(bool, default=False, doc="replace an existing PNG (else check() refuses it)")

    def __init__(self, path=REQUIRED, **params):
        if path is not REQUIRED:
            params["path"] = path
        super().__init__(**params)

    def check(self):
        if not str(self.path).lower().endswith(".png"):
            raise ValueError(f"step '{self.step_id}' (FigureSink) cannot write '{self.path}': the figure is a PNG "
                             "(its status is in the PNG metadata); give a path ending in .png")
        check_output_path(self, self.path, overwrite=self.overwrite, what="FigureSink", suffix=".png")

    def reset(self):
        self._img = None
        self._counts = None
        self._lag = None
        self._bw = None
        self._g2 = {}
        self._outside_prior = None  # the estimator's prior check, once it flagged estimates EST_OUTSIDE_PRIOR
        self._last_render = 0
        self.summary = ""
        self.analysis = None
        self.renders = 0
        self.status = "running"

    def process(self, msg, port):
        if port == "image":
            self._img = msg
            if self.every_n_pixels and msg.n_done - self._last_render >= self.every_n_pixels:
                self._last_render = msg.n_done
                self.render()
        elif port == "hist":
            ny, nx = (int(v) for v in msg.shape)
            if self._counts is None:
                self._counts = np.zeros((ny * nx, np.asarray(msg.counts).shape[1]))
                self._nx = nx
                self._lag = np.asarray(msg.lag_ps, float).copy()
                self._bw = float(msg.binwidth_ps) or float(np.mean(np.diff(self._lag)))
            self._counts[np.asarray(msg.pixel)] = msg.counts
        elif port == "g2":
            for p, v, e in zip(np.asarray(msg.pixel).tolist(), np.asarray(msg.g2_0).tolist(),
                               np.asarray(msg.g2_0_err).tolist()):
                self._g2[p] = (v, e)
            pc = (msg.meta or {}).get("prior_check") or {}
            if np.any(np.asarray(msg.flags) & EST_OUTSIDE_PRIOR) or pc.get("network"):
                self._outside_prior = dict(pc)
        return ()

    def outside_prior_note(self) -> str:
        """One line when the CNN's prior check found the scan's antibunching time below the network's range:
        either it switched to the 'wide' network (said so), or it flagged the values EST_OUTSIDE_PRIOR (not
        valid); else ''."""
        r = self._outside_prior
        if r is None:
            return ""
        t1 = r.get("t1_ns")
        at = f" (t1 {t1:.2f} ns < {r.get('t1_floor_ns', float('nan')):g} ns)" if t1 is not None else ""
        if r.get("network"):
            return (f"g2(0) from the CNN's '{r['network']}' network: the emitters' antibunching time lies below the "
                    f"default network's range{at} (prior check)")
        return (f"g2(0) flagged EST_OUTSIDE_PRIOR: the emitters' antibunching time lies below the CNN's training "
                f"range{at} -- g2(0), G2 and the verdict are not valid; use weights='wide', or PoissonMLE with "
                "pool_shape=True")

    def warmup(self):
        # import the plotting and analysis libraries now, in the start-up, not in finish(): on a
        # loaded machine the imports alone took ~6 s of the final render, i.e. of the wait after Ctrl-C
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot  # noqa: F401
        import scipy.ndimage  # noqa: F401
        import scipy.optimize  # noqa: F401

        import nodes.physics.direct  # noqa: F401
        import nodes.physics.resolution  # noqa: F401

    def finish(self):
        self.status = outcome(self)
        if self._img is None:
            if self.status != FINISHED:
                print(f"{self.step_id}: no image arrived before the run ended ({self.status}); "
                      f"'{self.path}' not written", flush=True)
            return ()
        if self.status == FINISHED:
            self.render()
            if self.print_summary and self.summary:
                print(self.summary, flush=True)
            if self.outside_prior_note():
                word = "note" if (self._outside_prior or {}).get("network") else "warning"
                print(f"{self.step_id}: {word}: {self.outside_prior_note()}", flush=True)
        else:  # interrupted or failed: the user is waiting for the exit -- the images only, quickly
            self.render(full=False)
            print(f"{self.step_id}: '{self.path}' shows the partial images ({self.status} run); the resolution "
                  "analysis is skipped -- run 'antibunch image RESULTS.h5' on the saved images for it",
                  flush=True)
        return ()

    # ------------------------------------------------------------------ analysis + drawing
    def _analyze(self):
        from nodes.physics.resolution import analyze, summary_table

        img = self._img
        shape = img.mask.shape
        em = emitters_to_px(self.emitters_nm, shape, self.pixel_nm) if self.emitters_nm else None
        if em is not None and len(em) == 3:
            em = em[:2]
        res = analyze(img.images, self.pixel_nm, emitters_px=em, n_emitters=min(self.n_emitters, 2))
        title = self.title or "resolution"
        self.analysis = res
        scan, partial = self.headline()
        self.summary = summary_table(res, title=f"{title} ({int(img.mask.sum())} pixels, {scan})"
                                     + (f"\n{partial}" if partial else ""))
        return res

    def render(self, full: bool = True):
        """Write the PNG. ``full=False`` (an interrupted or failed run, whose exit the user waits
        for): only the four image panels with the PARTIAL marking -- no resolution analysis, no
        fits, no profiles (about a third of the full render's time)."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        img = self._img
        res = self._analyze() if full else None
        ims = img.images
        ny, nx = img.mask.shape
        px = self.pixel_nm
        ext = [(-0.5 - (nx - 1) / 2) * px, (nx - 0.5 - (nx - 1) / 2) * px,
               (ny - 0.5 - (ny - 1) / 2) * px, (-0.5 - (ny - 1) / 2) * px]
        if full:
            fig, axes = plt.subplots(2, 4, figsize=(19, 8.6))
        else:
            fig, axes = plt.subplots(1, 4, figsize=(19, 4.9), squeeze=False)
        panels = [("intensity", "intensity (counts/s)", "magma"), ("g2_0", "g2(0)", "viridis"),
                  ("G2", "G2 = I²(1 − g2(0))", "magma"), ("G2_direct", "G2_direct (background-free)", "magma")]
        if "G3" in ims and np.isfinite(ims["G3"]).any():
            panels.append(("G3", "G3 = I³(2 − 3g2 + g3)/2", "magma"))
        if full:
            em_px = res["emitters_px"]
        else:  # known positions only: no search for maxima in a partial image
            em_px = emitters_to_px(self.emitters_nm, (ny, nx), px) if self.emitters_nm else []
        self._image_panels(fig, axes[0], panels[:4], ims, ext, em_px, ticks=full)
        if full:
            self._analysis_panels(fig, axes[1], res, panels, ims, ext)
        scan, partial = self.headline()
        fig.suptitle((self.title + "  " if self.title else "") + f"{scan}, {int(img.mask.sum())}/{nx * ny} pixels, "
                     f"estimator {img.meta.get('method', '')}, intensity from "
                     f"{img.meta.get('intensity_from', '?')}", fontsize=11)
        # fixed margins: tight_layout draws the whole figure once more just to measure it (about
        # 40 % of the render time), which an interrupted run would wait for at Ctrl-C
        import textwrap

        note = textwrap.fill(self.outside_prior_note(), 150)  # long: it must fit the figure's width
        room = (0.025 if full else 0.05) * (note.count("\n") + 1) if note else 0.0  # its lines under the suptitle
        if full:
            fig.subplots_adjust(left=0.045, right=0.985, bottom=0.065, top=(0.87 if partial else 0.91) - room,
                                wspace=0.38, hspace=0.32)
        else:
            fig.subplots_adjust(left=0.045, right=0.985, bottom=0.11, top=(0.76 if partial else 0.84) - room,
                                wspace=0.38)
        if note:  # under the suptitle, above the panels and the PARTIAL line
            switched = bool((self._outside_prior or {}).get("network"))
            fig.text(0.5, 0.955 if full else 0.93, note, ha="center", va="top", color="tab:blue" if switched else "red",
                     fontsize=11, weight="normal" if switched else "bold")
        if partial:
            fig.text(0.5, (0.935 if full else 0.875) - room, partial, ha="center", va="bottom", color="red",
                     fontsize=13, weight="bold")
            fig.text(0.5, 0.5, "PARTIAL", ha="center", va="center", rotation=25 if full else 12,
                     fontsize=90 if full else 70, color="red", alpha=0.12, weight="bold")
        try:
            with atomic_write(self.path) as tmp:  # a reader, a crash, a second Ctrl-C: never a half-written PNG
                fig.savefig(tmp, dpi=self.dpi, metadata={"Title": (self.title + "  " if self.title else "") + scan,
                                                         "Description": partial or "complete scan",
                                                         "antibunch_status": self.status,
                                                         "antibunch_pixel_visits_done": str(int(img.n_done))})
        finally:
            plt.close(fig)
        self.renders += 1

    def _image_panels(self, fig, axes, panels, ims, ext, em_px, ticks=True):
        """The image panels; ``ticks=False`` (the quick figure): no nm ticks on the images (drawing
        tick labels is most of matplotlib's time), the field size in the axis label instead."""
        import matplotlib.pyplot as plt

        ny, nx = self._img.mask.shape
        px = self.pixel_nm
        for ax, (name, label, cmap) in zip(axes, panels):
            a = np.asarray(ims.get(name, np.full((ny, nx), np.nan)), float)
            cm = plt.get_cmap(cmap).with_extremes(bad="#404040")
            kw = {}
            if name == "g2_0":
                kw = dict(vmin=0, vmax=1.2)
            elif np.isfinite(a).any():
                kw = dict(vmin=min(0.0, float(np.nanpercentile(a, 1))), vmax=float(np.nanpercentile(a, 99.5)))
            h = ax.imshow(np.ma.masked_invalid(a), extent=ext, cmap=cm, interpolation="nearest", **kw)
            fig.colorbar(h, ax=ax, shrink=0.8, label=self.colorbar_label(name))
            for r, c in em_px:
                ax.plot((c - (nx - 1) / 2) * px, (r - (ny - 1) / 2) * px, "c+", ms=8, mew=1.2)
            ax.set_title(label, fontsize=10)
            if ticks:
                ax.set_xlabel("x (nm)")
                ax.set_ylabel("y (nm)")
            else:
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_xlabel(f"{nx}×{ny} pixels, {nx * px:.0f} nm × {ny * px:.0f} nm", fontsize=9)

    def _analysis_panels(self, fig, axes, res, panels, ims, ext):
        ny, nx = self._img.mask.shape
        px = self.pixel_nm
        em_px = res["emitters_px"]
        # cross-sections with fits
        ax = axes[0]
        colors = {"intensity": "C0", "intensity^2": "C7", "G2": "C3", "G2_direct": "C1", "G3": "C2"}
        for name, r in res["images"].items():
            if not r["fwhm"]:
                continue
            f0 = r["fwhm"][0]
            for part in f0["profiles"][:1]:
                s_nm = part["s_px"] * px
                fit = part["fit"]
                if not fit["ok"]:
                    continue
                norm = fit["amp"] + fit["offset"]
                ax.plot(s_nm, part["values"] / norm, ".", color=colors.get(name, "k"), ms=4)
                ss = np.linspace(s_nm.min(), s_nm.max(), 300)
                model = (fit["amp"] * np.exp(-0.5 * ((ss / px - fit["center"]) / fit["sigma"]) ** 2)
                         + fit["offset"]) / norm
                ax.plot(ss, model, "-", color=colors.get(name, "k"),
                        label=f"{name}: FWHM {r['fwhm_nm']:.0f} ± {r['fwhm_err_nm']:.0f} nm")
        ax.set_title("cross-section through an emitter (⊥ pair axis)", fontsize=10)
        ax.set_xlabel("position (nm)")
        ax.set_ylabel("normalised")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        # pair axis profile
        ax = axes[1]
        pair_positions = None
        if len(em_px) >= 2:
            for name, r in res["images"].items():
                p = r.get("pair")
                if p is None:
                    continue
                v = p["profile"]
                peak = 0.5 * (p["values"][0] + p["values"][2])
                if not (peak > 0):
                    continue
                pair_positions = p["positions_px"]
                ax.plot(p["s_px"] * px, v / peak, "-o", ms=2.5, color=colors.get(name, "k"),
                        label=f"{name}: dip {p['dip']:+.2f}" + (f"±{p['dip_err']:.2f}" if np.isfinite(p['dip_err'])
                                                               else "") + (" resolved" if p["resolved"] else ""))
            if pair_positions is not None:
                for x in pair_positions[[0, 2]]:
                    ax.axvline(x * px, color="0.6", lw=0.8, ls="--")
                ax.legend(fontsize=7)
            ax.set_title(f"profile along the pair axis (d = {res.get('separation_nm', np.nan):.0f} nm)", fontsize=10)
        ax.set_xlabel("position (nm)")
        ax.set_ylabel("normalised to the emitters")
        # example histogram
        ax = axes[2]
        self._example_histogram(ax)
        # extra panel: G3 or the error map
        ax = axes[3]
        if len(panels) > 4:
            name, label, cmap = panels[4]
        else:
            name, label, cmap = "G2_direct_err", "G2_direct 1σ error", "viridis"
        a = np.asarray(ims.get(name, np.full((ny, nx), np.nan)), float)
        h = ax.imshow(np.ma.masked_invalid(a), extent=ext, cmap=cmap, interpolation="nearest")
        fig.colorbar(h, ax=ax, shrink=0.8, label=self.colorbar_label(name))
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("x (nm)")

    def headline(self):
        """(scan text, partial text or None) of the current image; see :func:`headline`."""
        frames = self.frames
        if frames is None:
            frames = (getattr(self, "graph_info", None) or {}).get("params", {}).get("frames")
            frames = int(frames) if isinstance(frames, (int, float)) and frames >= 1 else None
        return headline(self._img.n_done, self._img.mask.shape, frames, self.status)

    def colorbar_label(self, name):
        return unit_label(str((self._img.units or {}).get(name, "")))

    def _example_histogram(self, ax):
        from nodes.physics.direct import dip_basis, fit_pooled_shape

        ax.set_title("example histogram (pixel with most events)", fontsize=10)
        ax.set_xlabel("lag (ns)")
        ax.set_ylabel("coincidences per bin")
        if self._counts is None:
            ax.text(0.5, 0.5, "no histograms connected", ha="center", transform=ax.transAxes)
            return
        tot = self._counts.sum(axis=1)
        p = int(np.argmax(tot))
        h = self._counts[p]
        lag_ns = self._lag * 1e-3
        row, col = divmod(p, self._nx)
        ax.step(lag_ns, h, where="mid", color="0.3", lw=0.8,
                label=f"pixel (row {row}, col {col}): {int(tot[p])} events")
        fit = fit_pooled_shape(self._lag, self._bw, h)
        if fit is not None:
            X = dip_basis(self._lag, self._bw, fit["t1_ns"], fit["t2_ns"])
            m = fit["c"] * (X @ np.array([1.0, fit["a1"], fit["a2"]]))
            g0 = 1 - fit["a1"] + fit["a2"]
            ax.plot(lag_ns, m, "C3-", lw=1.2, label=f"3-level fit: g2(0)={g0:.2f}, t1={fit['t1_ns']:.1f} ns, "
                                                  f"t2={fit['t2_ns']:.0f} ns")
        if p in self._g2:
            ax.plot([], [], " ", label="estimator: " + g2_label(*self._g2[p]))
        ax.legend(fontsize=7)


def g2_label(value, err):
    """'g2(0) = 0.312 ± 0.041', without '±' when there is no error bar (NaN, inf or 0)."""
    txt = f"g2(0) = {value:.3f}"
    if err is not None and np.isfinite(err) and err > 0:
        txt += f" ± {err:.3f}"
    return txt
