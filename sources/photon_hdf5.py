"""``PhotonHDF5File``: stream any Photon-HDF5 file (T2 or T3) as TagBatches.

Purpose
    Photon-HDF5 (photon-hdf5.org; written by phconvert for many instruments and by our own
    :class:`sinks.hdf5.HDF5Sink` with ``save_tags=True``) stores ``/photon_data/timestamps``
    (integers in ``timestamps_specs/timestamps_unit`` seconds), ``detectors`` and, for TCSPC
    (T3) data, ``nanotimes`` in ``nanotimes_specs/tcspc_unit`` seconds. Datasets are read in
    slices of ``batch_tags`` (bounded memory).

    * A file written by ``HDF5Sink`` (it has ``/user/antibunch/tags/batches``) is replayed as
      the identical stream (same batches, channels, markers, ``delay_ps``) by
      :class:`sources.replay.HDF5Replay`.
    * Other files: ``time_ps = round(timestamp × timestamps_unit)`` (unit held as an exact
      fraction, see :func:`sources.ptu.exact_ps`); with ``nanotimes`` (the T3 mode)
      ``time_ps = round(timestamp × timestamps_unit + nanotime × tcspc_unit)`` -- the
      absolute photon time -- and ``delay_ps = round(nanotime × tcspc_unit)`` keeps the
      microtime. Tags are re-ordered exactly (a later timestamp can never precede the current
      one). Multi-spot files: ``spot`` picks ``/photon_dataN``.

    The sync period (``sync_period_ps`` of :func:`sources.formats.sniff`) is
    ``1/laser_repetition_rate(s)`` (measurement_specs or setup) when the file has it, else ``timestamps_unit`` for files
    with nanotimes (macrotimes counted in syncs).

Parameters
    path        the .h5/.hdf5 file
    spot        which ``/photon_dataN`` of a multi-spot file (default 0; ignored for one spot)
    batch_tags  tags read per batch (bounds memory)

Ports
    out: TagBatch (channel = /photon_data/detectors; T3: delay_ps = nanotime in ps)

Example
    >>> g.add("tags", PhotonHDF5File("smFRET.hdf5"))     # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.messages import TagBatch
from engine.node import Out, Param, Source
from sinks.hdf5 import layout

from .describing import with_file_info
from .ptu import exact_ps, t3_to_ps, units_to_ps
from .timeorder import TimeOrderer


class PhotonHDF5Error(ValueError):
    """A Photon-HDF5 file cannot be read (the message names the file and the dataset/index)."""


def _group(f, path: str, spot: int) -> str:
    if "photon_data" in f:
        return "photon_data"
    name = f"photon_data{spot}"
    if name not in f:
        spots = sorted(k for k in f if k.startswith("photon_data"))
        raise PhotonHDF5Error(f"{path}: no /{name} (spots in the file: {spots})")
    return name


def _scalar(f, key: str):
    if key not in f:
        return None
    v = f[key][()]
    v = np.asarray(v).ravel()
    return float(v[0]) if v.size else None


def read_meta(path: str, spot: int = 0) -> dict:
    """Units, sizes and sync period of ``path`` (no tags read)."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise PhotonHDF5Error(f"{path}: cannot be opened as HDF5 ({exc})") from None
    with f:
        g = _group(f, path, spot)
        if f"{g}/timestamps" not in f:
            raise PhotonHDF5Error(f"{path}: /{g}/timestamps missing: not a Photon-HDF5 tag file")
        n = f[f"{g}/timestamps"].shape[0]
        det = f"{g}/detectors" in f
        if det and f[f"{g}/detectors"].shape[0] != n:
            raise PhotonHDF5Error(f"{path}: /{g}/detectors has {f[f'{g}/detectors'].shape[0]} entries, "
                                  f"timestamps {n}: damaged file")
        unit = _scalar(f, f"{g}/timestamps_specs/timestamps_unit")
        if not unit or unit <= 0:
            raise PhotonHDF5Error(f"{path}: /{g}/timestamps_specs/timestamps_unit missing or not positive")
        nano = f"{g}/nanotimes" in f
        tcspc = _scalar(f, f"{g}/nanotimes_specs/tcspc_unit") if nano else None
        if nano and (not tcspc or tcspc <= 0):
            raise PhotonHDF5Error(f"{path}: /{g}/nanotimes without a positive nanotimes_specs/tcspc_unit")
        if nano and f[f"{g}/nanotimes"].shape[0] != n:
            raise PhotonHDF5Error(f"{path}: /{g}/nanotimes length differs from timestamps: damaged file")
        rep = (_scalar(f, f"{g}/measurement_specs/laser_repetition_rate")
               or _scalar(f, "setup/laser_repetition_rates") or _scalar(f, "setup/laser_repetition_rate"))
        ours = layout.TAG_BATCHES in f and g == "photon_data"
        mtype = f.get(f"{g}/measurement_specs/measurement_type")
        mtype = mtype[()].decode() if mtype is not None and isinstance(mtype[()], bytes) else (
            str(mtype[()]) if mtype is not None else None)
        version = f.attrs.get("format_version")
        version = version.decode() if isinstance(version, bytes) else version
    sync = 1e12 / rep if rep else (unit * 1e12 if nano else None)
    return {"group": g, "n": n, "has_detectors": det, "unit_s": unit, "tcspc_unit_s": tcspc, "nanotimes": nano,
            "sync_period_ps": sync, "antibunch_batches": ours, "measurement_type": mtype,
            "format_version": version}


def sniff(path: str):
    from .formats import FormatInfo

    m = read_meta(path)
    return FormatInfo("photon_hdf5", path, f"Photon-HDF5 {m['format_version'] or ''}".strip(),
                      "T3" if m["nanotimes"] else "T2", m["sync_period_ps"], None, None, m["n"],
                      {"timestamps_unit_s": m["unit_s"], "microtime_bin_ps": (m["tcspc_unit_s"] or 0) * 1e12 or None,
                       "measurement_type": m["measurement_type"], "written_by_antibunch": m["antibunch_batches"],
                       "group": m["group"]})


class PhotonHDF5File(Source):
    """Stream a Photon-HDF5 file as TagBatches (see the module docstring)."""

    out = Out(TagBatch, doc="tags in ps (T3: absolute times, delay_ps = nanotime in ps)")
    path = Param(str, doc="the Photon-HDF5 file")
    spot = Param(int, default=0, min=0, doc="which /photon_dataN of a multi-spot file")
    batch_tags = Param(int, default=1 << 20, min=1, doc="tags read per batch (bounds memory)")

    def check(self):
        if not Path(self.path).is_file():
            raise FileNotFoundError(f"PhotonHDF5File: file not found: {self.path}")
        read_meta(self.path, self.spot)

    def describe(self):
        def read_info():
            m = read_meta(self.path, self.spot)
            return {"format": "photon_hdf5", "mode": "T3" if m["nanotimes"] else "T2",
                    "sync_period_ps": m["sync_period_ps"]}

        return with_file_info(super().describe(), read_info)

    def reset(self):
        self.warnings: list[str] = []
        self.counters = {}

    def generate(self):
        m = read_meta(self.path, self.spot)
        if m["antibunch_batches"]:
            from .replay import HDF5Replay

            rep = HDF5Replay(path=self.path, batch_tags=self.batch_tags)
            rep.step_id = getattr(self, "step_id", "tags")
            rep.reset()
            rep.stop_requested = False
            for b in rep.generate():
                if self.stop_requested:
                    rep.request_stop()
                yield b
            self.counters = dict(rep.counters)
            return
        yield from self._foreign(m)

    def _foreign(self, m):
        import h5py

        g = m["group"]
        unit = exact_ps(m["unit_s"], 10**9)
        tc = exact_ps(m["tcspc_unit_s"], 10**9) if m["nanotimes"] else None
        n = m["n"]
        with h5py.File(self.path, "r") as f:
            ts, det = f[f"{g}/timestamps"], f.get(f"{g}/detectors")
            nano = f[f"{g}/nanotimes"] if m["nanotimes"] else None
            order = None
            last = None
            i = 0
            while i < n and not self.stop_requested:
                k = min(self.batch_tags, n - i)
                u = np.asarray(ts[i:i + k]).astype(np.int64)
                bad = np.flatnonzero(np.diff(u) < 0) if len(u) > 1 else np.zeros(0, int)
                if len(bad) or (last is not None and len(u) and u[0] < last):
                    j = i + (int(bad[0]) + 1 if len(bad) else 0)
                    raise PhotonHDF5Error(f"{self.path}: /{g}/timestamps not monotonic at index {j}; the file is "
                                          f"damaged (Photon-HDF5 timestamps are sorted)")
                c = (np.asarray(det[i:i + k]).astype(np.int16) if det is not None else np.zeros(k, np.int16))
                if nano is not None:
                    dt = np.asarray(nano[i:i + k]).astype(np.int64)
                    t = t3_to_ps(u, unit, dt, tc)
                    d = units_to_ps(dt, tc)
                else:
                    t, d = units_to_ps(u, unit), None
                if order is None:
                    order = TimeOrderer(with_delay=nano is not None, t_begin_ps=int(t.min()) if len(t) else 0)
                last = int(u[-1]) if len(u) else last
                bound = int(units_to_ps(np.array([last], np.int64), unit)[0]) if last is not None else order.t_begin
                b = order.push(t, c, d, bound)
                if b is not None:
                    yield b
                i += k
                self.counters = {"tags": i, "batches": order.seq}
            if self.stop_requested:
                self.exit_status = "abort"
                return
            if order is not None:
                b = order.finish((order._max_seen or 0) + 1)
                if b is not None:
                    yield b
                self.counters = {"tags": n, "batches": order.seq}
