"""HDF5 sink: Photon-HDF5 0.5 tags (optional) and antibunch results in one file.

``HDF5Sink(path, save_tags=False)`` writes, with h5py:

- **Tags** (``save_tags=True``, input ``tags``) as Photon-HDF5 0.5 that phconvert's validator
  accepts: ``/photon_data/timestamps`` (int64, unit 1 ps in ``timestamps_specs/timestamps_unit``),
  ``/photon_data/detectors`` (int16 channel: detectors ≥ 0; scan markers keep their negative
  marker channels PIXEL = −1, LINE = −2, FRAME = −3, USER = −4, listed in
  ``/setup/detectors/id`` with labels), ``/photon_data/user/delay_ps`` (int64 start–stop lag of
  SPC-150 TAC records, ``NO_DELAY`` = −2⁶³ for tags without a conversion; only when the stream
  has delays) and ``/user/antibunch/tags/batches`` (int64 rows ``t_begin_ps, t_end_ps, seq,
  flags, end_index, has_delay``) so :class:`sources.replay.HDF5Replay` re-creates the identical TagBatch
  stream. ``/setup`` (CW, no lifetime, one spot, ``num_split_ch`` = detectors) and
  ``measurement_specs`` (``generic``, ``split_ch<i>``) are completed at the end of the stream.
- **Results** under ``/user/antibunch/``: ``pixels/counts`` int64 ``(ny, nx, n_bins)``,
  ``pixels/lag_ps``, ``pixels/singles``, ``pixels/exposure_s`` (+ ``pixels/increments``,
  ``pixels/coincidences`` when present), ``image/<name>`` float64 ``(ny, nx)`` for every image of
  the assembler (``intensity``, ``g2_0``, ``g2_0_err``, ``G2``, ``G2_direct``, ``G3``, ...) with a
  ``units`` attribute and ``image/mask``; each group carries the producing node's class, port
  and parameters (JSON) as attributes; ``graph`` holds the graph name, reference, parameters and
  the graph file's text; ``software`` the versions; the root attributes
  ``antibunch_created_utc``/``antibunch_updated_utc``/``antibunch_status`` and
  ``antibunch_pixel_visits_done``. The paths are owned by :mod:`sinks.hdf5.layout`.

``antibunch_status`` is 'running' while the file is written, then 'finished' (the source ended
by itself), 'interrupted' (Ctrl-C, SIGTERM, a duration limit: what arrived is saved, the scan
is partial) or 'failed' (a step failed; this sink saved what it had). Every message is
appended (tags) or written in place (pixels, images); the file is ``flush()``ed after every
image snapshot and at least every ``flush_every_s`` seconds while tags and histograms arrive,
so even a run killed outright (SIGKILL, power loss) leaves a readable file with everything up
to the last flush (``antibunch_status`` then still says 'running'). The file format is the
HDF5 1.8 superblock (``libver=('v108', 'v114')``): a v110 superblock would carry a
write-status flag that makes a file from a killed run unopenable without ``h5clear``.

``check()`` refuses, before acquisition starts, an unwritable path and an existing file
(unless ``overwrite=True``; see :mod:`sinks.output`). The file is created when the first
message arrives, so a run that fails before acquisition leaves no file behind.

Parameters: ``path`` (str), ``save_tags`` (bool), ``overwrite`` (bool), ``flush_every_s``, ``description``,
``author``, ``author_affiliation`` (str).

Example::

    g.add("save", HDF5Sink("scan.h5"), tags=tags, hist=hist, image=img)
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import time

import numpy as np

from engine.messages import NO_DELAY, Estimates, Image, PixelHistograms, TagBatch
from engine.node import REQUIRED, In, Param, Sink, plain

from ..output import FAILED, FINISHED, INTERRUPTED, check_output_path, outcome
from . import layout
from .photon import LIBVER, MARKER_LABELS, TITLES, split_title, write_scalar, write_title

_DELAY_GROUP, _DELAY_NAME = layout.DELAY.rsplit("/", 1)
_BATCHES = layout.TAG_BATCHES.rsplit("/", 1)[1]

def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _software_version() -> str:
    try:
        from importlib.metadata import version

        return version("antibunch")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "unknown"


class HDF5Sink(Sink):
    """Write tags (Photon-HDF5 0.5), pixel histograms and images to one HDF5 file.

    See the module docstring for the layout. Inputs are all optional: connect what you want
    saved (``tags`` only matters with ``save_tags=True``).
    """

    tags = In(TagBatch, optional=True, doc="time tags (saved with save_tags=True)")
    hist = In(PixelHistograms, optional=True, doc="per-pixel cumulative histograms")
    image = In(Image, optional=True, doc="image snapshots")
    g2 = In(Estimates, optional=True, doc="per-pixel estimates (saved under estimates/)")

    path = Param(str, doc="output .h5 file")
    save_tags = Param(bool, default=False, doc="also store every tag as Photon-HDF5 photon_data")
    overwrite = Param(bool, default=False, doc="replace an existing file (else check() refuses it)")
    description = Param(str, default="antibunch acquisition", doc="Photon-HDF5 /description")
    author = Param(str, default="", doc="Photon-HDF5 /identity/author")
    author_affiliation = Param(str, default="", doc="Photon-HDF5 /identity/author_affiliation")
    flush_every_s = Param(float, default=1.0, min=0.0, unit="s",
                          doc="max seconds between flushes of tags/histograms (images: every snapshot)")

    def __init__(self, path=REQUIRED, **params):
        if path is not REQUIRED:
            params["path"] = path
        super().__init__(**params)
        self._desc: dict = {}
        self._f = None

    # -- set-up
    def check(self):
        check_output_path(self, self.path, overwrite=self.overwrite, what="HDF5Sink", suffix=".h5")

    def on_descriptor(self, port, desc):
        self._desc[port] = {"node": desc.node, "port": desc.port, "params": plain(desc.params),
                            "units": plain(desc.units)}
        if getattr(self, "_f", None) is not None:
            self._write_provenance(port)

    def reset(self):
        self.check()
        self._close_file()
        self._t_first = None
        self._t_last = None
        self._n_tags = 0
        self._det_counts: dict[int, int] = {}
        self._has_delay = False
        self._pix = None
        self._img_names = set()
        self._last_flush = 0.0
        self._dirty_rows: set = set()
        self._visits = None
        self._ended = False

    def _open(self):
        """Create the file when the first data arrive: a run that fails before acquisition
        leaves no file (and an earlier one, with overwrite=True, is replaced only now)."""
        import h5py

        self._f = h5py.File(self.path, "w" if self.overwrite else "w-", libver=LIBVER)
        self._write_skeleton()
        for port in list(self._desc):
            self._write_provenance(port)
        self._f.flush()

    # -- skeleton and metadata
    def _write_skeleton(self):
        f = self._f
        f.attrs["TITLE"] = np.bytes_(TITLES["/"])
        f.attrs["format_name"] = np.bytes_(b"Photon-HDF5")
        f.attrs["format_version"] = np.bytes_(b"0.5")
        f.attrs["format_url"] = np.bytes_(b"http://photon-hdf5.org/")
        f.attrs[layout.CREATED] = np.bytes_(_now().encode())
        f.attrs[layout.UPDATED] = np.bytes_(_now().encode())
        f.attrs[layout.STATUS] = np.bytes_(layout.RUNNING.encode())
        write_scalar(f, "description", self.description or " ", "/description")
        write_scalar(f, "acquisition_duration", 0.0, "/acquisition_duration")
        write_scalar(f, "format_name", "Photon-HDF5", "/format_name")
        write_scalar(f, "format_version", "0.5", "/format_version")
        idn = f.create_group("identity")
        write_title(idn, "/identity")
        path = os.path.abspath(self.path)
        for name, val in (("author", self.author or " "), ("author_affiliation", self.author_affiliation or " "),
                          ("creation_time", _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")),
                          ("filename", os.path.basename(path)), ("filename_full", path),
                          ("format_name", "Photon-HDF5"), ("format_version", "0.5"),
                          ("format_url", "http://photon-hdf5.org/"), ("software", "antibunch"),
                          ("software_version", _software_version())):
            write_scalar(idn, name, val, f"/identity/{name}")
        setup = f.create_group("setup")
        write_title(setup, "/setup")
        for name, val in (("num_pixels", 2), ("num_spots", 1), ("num_spectral_ch", 1), ("num_polarization_ch", 1),
                          ("num_split_ch", 2), ("modulated_excitation", False), ("lifetime", False)):
            write_scalar(setup, name, np.int64(val), f"/setup/{name}")
        for name in ("excitation_alternated", "excitation_cw"):
            ds = setup.create_dataset(name, data=np.array([name == "excitation_cw"], np.uint8))
            write_title(ds, f"/setup/{name}")
        sw = f.create_group(layout.SOFTWARE)
        import h5py as _h5

        sw.attrs["antibunch"] = _software_version()
        sw.attrs["numpy"] = np.__version__
        sw.attrs["h5py"] = _h5.__version__
        sw.attrs["hdf5"] = _h5.version.hdf5_version
        info = getattr(self, "graph_info", None) or {}
        g = f.create_group(layout.GRAPH)
        g.attrs["name"] = str(info.get("name") or "")
        g.attrs["ref"] = str(info.get("ref") or "")
        g.attrs["params_json"] = json.dumps(plain(info.get("params") or {}))
        g.attrs["sink_step"] = str(self.step_id)
        g.create_dataset("source_text", data=np.bytes_((info.get("source_text") or "").encode()))
        f.create_group(layout.SINK).attrs["params_json"] = json.dumps(plain(self.params))

    def _write_provenance(self, port):
        d = self._desc.get(port)
        if d is None or self._f is None:
            return
        grp = self._f.require_group(layout.INPUTS).require_group(port)
        grp.attrs["node"] = str(d["node"])
        grp.attrs["port"] = str(d["port"])
        grp.attrs["params_json"] = json.dumps(d["params"])
        grp.attrs["units_json"] = json.dumps(d["units"])

    def _producer_attrs(self, obj, port):
        d = self._desc.get(port)
        if d is None:
            return
        obj.attrs["node"] = str(d["node"])
        obj.attrs["port"] = str(d["port"])
        obj.attrs["params_json"] = json.dumps(d["params"])
        for k, v in (d["params"] or {}).items():
            try:
                obj.attrs[f"param_{k}"] = v if not isinstance(v, (dict, list)) else json.dumps(v)
            except (TypeError, ValueError):
                obj.attrs[f"param_{k}"] = json.dumps(v)

    def _sync_pixels(self):
        """Write the scan lines that changed since the last flush (whole lines: few, large writes)."""
        if not self._dirty_rows or self._pix is None:
            return
        g = self._f[layout.PIXELS]
        for r in sorted(self._dirty_rows):
            for name, mirror in self._pix.items():
                if name != "shape":
                    g[name][r] = mirror[r]
        self._dirty_rows.clear()

    def _touch(self, force=True):
        """Flush: always after an image snapshot (and at the end), otherwise at most every
        ``flush_every_s`` seconds (histograms and tags arrive far more often than snapshots)."""
        now = time.monotonic()
        if not force and now - self._last_flush < self.flush_every_s:
            return
        self._last_flush = now
        self._sync_pixels()
        self._f.attrs[layout.UPDATED] = np.bytes_(_now().encode())
        if self._visits is not None:
            self._f.attrs[layout.VISITS_DONE] = self._visits
        self._f.flush()

    # -- inputs
    def process(self, msg, port):
        if self._f is None:
            self._open()
        if port == "tags":
            if self.save_tags:
                self._write_tags(msg)
        elif port == "hist":
            self._write_hist(msg)
        elif port == "image":
            self._write_image(msg)
        elif port == "g2":
            self._write_estimates(msg)
        return ()

    def _append(self, grp, name, data, title_path=None, fill=None):
        if name not in grp:
            ds = grp.create_dataset(name, shape=(0,) + data.shape[1:], maxshape=(None,) + data.shape[1:],
                                    dtype=data.dtype, chunks=(1 << 16,) + data.shape[1:] if data.ndim == 1 else
                                    (1024,) + data.shape[1:])
            if title_path:
                write_title(ds, title_path)
            if fill is not None and self._n_tags:
                ds.resize((self._n_tags,) + data.shape[1:])
                ds[:] = fill
        ds = grp[name]
        n = ds.shape[0]
        ds.resize((n + len(data),) + data.shape[1:])
        ds[n:] = data
        return ds

    def _write_tags(self, b: TagBatch):
        f = self._f
        if layout.PHOTON_DATA not in f:
            pd = f.create_group(layout.PHOTON_DATA)
            write_title(pd, "/photon_data")
            ts = pd.create_group("timestamps_specs")
            write_title(ts, "/photon_data/timestamps_specs")
            write_scalar(ts, "timestamps_unit", 1e-12, "/photon_data/timestamps_specs/timestamps_unit")
        pd = f[layout.PHOTON_DATA]
        n0 = self._n_tags
        if b.delay_ps is not None and not self._has_delay:
            self._has_delay = True
            self._append(f.require_group(_DELAY_GROUP), _DELAY_NAME, np.asarray(b.delay_ps, np.int64), fill=NO_DELAY)
            delay_written = True
        else:
            delay_written = False
        self._append(pd, "timestamps", np.asarray(b.time_ps, np.int64), "/photon_data/timestamps")
        self._append(pd, "detectors", np.asarray(b.channel, np.int16), "/photon_data/detectors")
        if self._has_delay and not delay_written:
            d = b.delay_ps if b.delay_ps is not None else np.full(len(b), NO_DELAY, np.int64)
            self._append(f[_DELAY_GROUP], _DELAY_NAME, np.asarray(d, np.int64))
        self._n_tags = n0 + len(b)
        row = np.array([[b.t_begin_ps, b.t_end_ps, b.seq, b.flags, self._n_tags, int(b.delay_ps is not None)]],
                       np.int64)
        tg = f.require_group(layout.TAGS)
        if _BATCHES not in tg:
            tg.attrs["columns"] = ", ".join(layout.TAG_BATCH_COLUMNS)
            tg.attrs["markers"] = json.dumps({str(k): v for k, v in MARKER_LABELS.items()})
            tg.attrs["delay_ps"] = (f"/{layout.DELAY}: start-stop lag (ps) of each tag; "
                                    f"{NO_DELAY} = no TAC conversion")
            self._producer_attrs(tg, "tags")
        self._append(tg, _BATCHES, row)
        if len(b):
            ch, cnt = np.unique(np.asarray(b.channel), return_counts=True)
            for c, k in zip(ch.tolist(), cnt.tolist()):
                self._det_counts[c] = self._det_counts.get(c, 0) + k
        if self._t_first is None:
            self._t_first = b.t_begin_ps
        self._t_last = b.t_end_ps
        f["acquisition_duration"][()] = (self._t_last - self._t_first) * 1e-12
        self._touch(force=False)

    def _write_hist(self, m: PixelHistograms):
        ny, nx = (int(v) for v in m.shape)
        counts = np.asarray(m.counts)
        if self._pix is None:
            g = self._f.require_group(layout.PIXELS)
            self._producer_attrs(g, "hist")
            n_bins = counts.shape[1]
            self._pix = {"shape": (ny, nx)}
            mk = {"counts": ((ny, nx, n_bins), np.int64, "counts"),
                  "singles": ((ny, nx, np.asarray(m.singles).shape[1]), np.int64, "counts"),
                  "exposure_s": ((ny, nx), np.float64, "s")}
            if m.increments is not None:
                mk["increments"] = ((ny, nx) + np.asarray(m.increments).shape[1:], np.int64, "counts")
            if m.coincidences is not None:
                mk["coincidences"] = ((ny, nx, np.asarray(m.coincidences).shape[1]), np.int64, "counts")
            for name, (shape, dt, unit) in mk.items():
                maxshape = (ny, nx, None, shape[3]) if name == "increments" else shape  # n_inc grows
                ds = g.create_dataset(name, shape=shape, dtype=dt, chunks=(1,) + tuple(max(v, 1) for v in shape[1:]),
                                      fillvalue=0, maxshape=maxshape)
                ds.attrs["units"] = unit
                self._pix[name] = np.zeros(shape, dt)
            lag = g.create_dataset("lag_ps", data=np.asarray(m.lag_ps, np.float64))
            lag.attrs["units"] = "ps"
            g.attrs["binwidth_ps"] = float(m.binwidth_ps)
            g.attrs["increment_s"] = float(m.increment_s)
            g.attrs["coincidence_window_ps"] = float(m.coincidence_window_ps)
            g["counts"].attrs["axes"] = "row (line), column (pixel in line), lag bin"
        g = self._f[layout.PIXELS]
        if (ny, nx) != self._pix["shape"]:
            raise ValueError(f"step '{self.step_id}': pixel messages changed shape from {self._pix['shape']} "
                             f"to {(ny, nx)}; one scan per file")
        pix = np.asarray(m.pixel, np.int64)
        rows, cols = pix // nx, pix % nx
        fields = {"counts": counts, "singles": m.singles, "exposure_s": m.exposure_s,
                  "increments": m.increments, "coincidences": m.coincidences}
        for name, val in fields.items():
            if name not in self._pix or val is None:
                continue
            val = np.asarray(val)
            mirror = self._pix[name]
            if name == "increments" and val.shape[1] != mirror.shape[2]:
                n_inc = max(val.shape[1], mirror.shape[2])
                if n_inc > mirror.shape[2]:  # the accumulator allocated more increments: grow
                    grown = np.zeros(mirror.shape[:2] + (n_inc,) + mirror.shape[3:], mirror.dtype)
                    grown[:, :, :mirror.shape[2]] = mirror
                    self._pix[name] = mirror = grown
                    g[name].resize(n_inc, axis=2)
                    self._dirty_rows.update(range(ny))
                if val.shape[1] < n_inc:
                    pad = np.zeros((val.shape[0], n_inc) + val.shape[2:], val.dtype)
                    pad[:, :val.shape[1]] = val
                    val = pad
            if val.ndim > 1 and val.shape[1:] != mirror.shape[2:]:
                raise ValueError(f"step '{self.step_id}': pixels/{name} changed shape from {mirror.shape[2:]} "
                                 f"to {val.shape[1:]}; one accumulator per file")
            mirror[rows, cols] = val
        # the file is brought up to date line by line at each flush (see _sync_pixels)
        self._dirty_rows.update(np.unique(rows).tolist())
        g.attrs["n_done"] = int(m.n_done)
        g.attrs["frame"] = int(m.frame)
        self._visits = max(self._visits or 0, int(m.n_done))
        self._touch(force=False)

    def _write_image(self, m: Image):
        g = self._f.require_group(layout.IMAGE)
        if not self._img_names:
            self._producer_attrs(g, "image")
        for name, arr in m.images.items():
            arr = np.asarray(arr, np.float64)
            if name not in g:
                ds = g.create_dataset(name, shape=arr.shape, dtype=np.float64, fillvalue=np.nan)
                ds.attrs["units"] = str(m.units.get(name, ""))
                self._producer_attrs(ds, "image")
                self._img_names.add(name)
            g[name][...] = arr
        if "mask" not in g:
            g.create_dataset("mask", shape=m.mask.shape, dtype=np.uint8)
        g["mask"][...] = np.asarray(m.mask, np.uint8)
        g.attrs["n_done"] = int(m.n_done)
        g.attrs["frame"] = int(m.frame)
        self._visits = max(self._visits or 0, int(m.n_done))
        g.attrs["snapshot_seq"] = int(m.seq)
        g.attrs["meta_json"] = json.dumps(plain(m.meta))
        g.attrs["updated_utc"] = _now()
        self._touch()

    def _write_estimates(self, m: Estimates):
        ny, nx = (int(v) for v in m.shape)
        g = self._f.require_group(layout.ESTIMATES)
        if "g2_0" not in g:
            self._producer_attrs(g, "g2")
            g.attrs["method"] = str(m.method)
            for name in ("g2_0", "g2_0_err", "n_events"):
                g.create_dataset(name, shape=(ny, nx), dtype=np.float64, fillvalue=np.nan)
            g.create_dataset("flags", shape=(ny, nx), dtype=np.uint8)
            self._est = {k: np.full((ny, nx), np.nan) for k in ("g2_0", "g2_0_err", "n_events")}
            self._est["flags"] = np.zeros((ny, nx), np.uint8)
        pix = np.asarray(m.pixel, np.int64)
        for name in _CORE_ESTIMATES:
            self._est[name].flat[pix] = np.asarray(getattr(m, name))
            g[name][...] = self._est[name]
        meta = m.meta or {}
        if meta.get("model"):  # which checkpoint and calibration (the prior check may switch it mid-scan)
            js = json.dumps(plain(meta["model"]))
            if g.attrs.get("model_json") != js:
                g.attrs["model_json"] = js
        if meta.get("prior_check"):
            g.attrs["prior_check_json"] = json.dumps(plain(meta["prior_check"]))
        for name, values in _per_pixel_extras(m.extra, len(pix)).items():
            if name not in self._est:  # e.g. the CNN's refined, g2_0_cnn, g2_0_err_cnn; the fits' t1_ps, t2_ps
                g.create_dataset(name, shape=(ny, nx), dtype=np.float64, fillvalue=np.nan)
                self._est[name] = np.full((ny, nx), np.nan)
            self._est[name].flat[pix] = values
            g[name][...] = self._est[name]
        self._touch(force=False)

    # -- end
    def finish(self):
        status = outcome(self)
        if self._f is None:
            if status != FINISHED:
                print(f"{self.step_id}: no data arrived before the run ended ({status}); "
                      f"'{self.path}' not written", flush=True)
                return ()
            self._open()  # a stream that ended by itself with no data: an empty, finished result
        self._end(status)
        return ()

    def _end(self, status, reason=""):
        f = self._f
        self._ended = True
        if layout.PHOTON_DATA in f:
            self._finish_photon_data()
        f.attrs[layout.STATUS] = np.bytes_(status.encode())
        if reason:
            f.attrs[layout.STOP_REASON] = reason
        f.attrs[layout.ENDED] = np.bytes_(_now().encode())
        self._touch()

    def _finish_photon_data(self):
        f = self._f
        ids = sorted(self._det_counts)
        dets = [i for i in ids if i >= 0]
        setup = f["setup"]
        setup["num_pixels"][()] = max(len(dets), 1)
        setup["num_split_ch"][()] = max(len(dets), 1)
        sd = setup.require_group("detectors")
        write_title(sd, "/setup/detectors")
        for name, data in (("id", np.array(ids, np.int16)),
                           ("counts", np.array([self._det_counts[i] for i in ids], np.int64))):
            if name in sd:
                del sd[name]
            ds = sd.create_dataset(name, data=data)
            write_title(ds, f"/setup/detectors/{name}")
        if "label" in sd:
            del sd["label"]
        sd.create_dataset("label", data=np.array([MARKER_LABELS.get(i, f"detector {i}").encode() for i in ids],
                                                 dtype="S16")).attrs["TITLE"] = np.bytes_(
            b"Labels (strings) describing each detector.")
        pd = f[layout.PHOTON_DATA]
        if "measurement_specs" not in pd:
            ms = pd.create_group("measurement_specs")
            write_title(ms, "/photon_data/measurement_specs")
            write_scalar(ms, "measurement_type", "generic", "/photon_data/measurement_specs/measurement_type")
            dspec = ms.create_group("detectors_specs")
            write_title(dspec, "/photon_data/measurement_specs/detectors_specs")
            if len(dets) > 1:
                for i, d in enumerate(dets):
                    ds = dspec.create_dataset(f"split_ch{i + 1}", data=np.array([d], np.int16))
                    ds.attrs["TITLE"] = np.bytes_(split_title(i).encode())

    def close(self):
        if self._f is not None and not self._ended:
            # closed without finish(): this step failed, or its run did, or the user abandoned the
            # run's final flush (a repeated Ctrl-C); say so in the file
            status = INTERRUPTED if self.stream_status == "abort" else FAILED  # told by the executor
            try:
                self._end(status, "the HDF5 sink was closed before the end of its input streams"
                          + (" (the run was stopped and its final flush abandoned)" if status == INTERRUPTED else ""))
            except Exception:  # noqa: BLE001 - closing must still happen
                pass
        self._close_file()

    def _close_file(self):
        f = getattr(self, "_f", None)
        if f is not None:
            try:
                f.flush()
                f.close()
            finally:
                self._f = None


#: names an estimator's extra may not take in the estimates group (the core datasets)
_CORE_ESTIMATES = ("g2_0", "g2_0_err", "n_events", "flags")


def _per_pixel_extras(extra: dict, n: int) -> dict:
    """The numeric per-pixel entries of an Estimates ``extra`` (1-D, one value per pixel) as float64."""
    out = {}
    for name, v in (extra or {}).items():
        a = np.asarray(v)
        if name in _CORE_ESTIMATES or a.ndim != 1 or a.shape[0] != n or a.dtype.kind not in "biuf":
            continue
        out[str(name)] = a.astype(np.float64)
    return out
