"""The antibunch results layout inside an HDF5 file: the one place that spells its paths.

Every reader and writer of ``/user/antibunch/...`` (the HDF5 sink, ``antibunch image``, the tag
replay, training on recorded histograms) takes its paths from here. Paths are relative to the
file root (h5py accepts them with or without the leading ``/``)::

    /                          root attributes: antibunch_status, antibunch_created_utc, ...
    /photon_data/...           Photon-HDF5 0.5 tags (timestamps, detectors, user/delay_ps)
    /user/antibunch/tags/batches     int64 rows TAG_BATCH_COLUMNS (batch boundaries of the tags)
    /user/antibunch/pixels/    counts (ny, nx, n_bins), lag_ps, singles, exposure_s, increments,
                               coincidences; attributes n_done, frame, binwidth_ps, ...
    /user/antibunch/image/     one (ny, nx) float64 dataset per image (units attribute) + mask
    /user/antibunch/estimates/ g2_0, g2_0_err, n_events, flags (ny, nx), plus the estimator's numeric
                               per-pixel extras (CNN: refined, g2_0_cnn, g2_0_err_cnn; fits: t1_ps, ...)
    /user/antibunch/graph      graph name, reference, parameters (params_json), source_text
    /user/antibunch/software   versions;  /user/antibunch/inputs/<port>: producer provenance
    /user/antibunch/sink       the sink's own parameters

Example::

    from sinks.hdf5 import layout
    with layout.open_results("scan.h5") as f:
        counts = f[layout.PIXELS]["counts"][()]
"""
from __future__ import annotations

from ..output import FAILED, FINISHED, INTERRUPTED  # noqa: F401 - antibunch_status values

ROOT = "user/antibunch"
TAGS = ROOT + "/tags"
TAG_BATCHES = TAGS + "/batches"
PIXELS = ROOT + "/pixels"
PIXEL_COUNTS = PIXELS + "/counts"
IMAGE = ROOT + "/image"
ESTIMATES = ROOT + "/estimates"
ESTIMATES_G2 = ESTIMATES + "/g2_0"
GRAPH = ROOT + "/graph"
SOFTWARE = ROOT + "/software"
INPUTS = ROOT + "/inputs"
SINK = ROOT + "/sink"

# Photon-HDF5 0.5 (photon-hdf5.org) paths the sink writes and the replay reads
PHOTON_DATA = "photon_data"
TIMESTAMPS = PHOTON_DATA + "/timestamps"
DETECTORS = PHOTON_DATA + "/detectors"
TIMESTAMPS_UNIT = PHOTON_DATA + "/timestamps_specs/timestamps_unit"
DELAY = PHOTON_DATA + "/user/delay_ps"

TAG_BATCH_COLUMNS = ("t_begin_ps", "t_end_ps", "seq", "flags", "end_index", "has_delay")

# root attributes
STATUS = "antibunch_status"
CREATED = "antibunch_created_utc"
UPDATED = "antibunch_updated_utc"
ENDED = "antibunch_finished_utc"
STOP_REASON = "antibunch_stop_reason"
VISITS_DONE = "antibunch_pixel_visits_done"  # completed pixel visits (all frames) when last flushed
# antibunch_status: 'running' while written (a run killed outright keeps it), then 'finished' (the
# source ended by itself), 'interrupted' (stopped: Ctrl-C, SIGTERM, a duration limit) or 'failed'
RUNNING = "running"



def status(f) -> str:
    """The ``antibunch_status`` root attribute of an open file ('' when absent)."""
    v = f.attrs.get(STATUS, b"")
    return v.decode() if isinstance(v, bytes) else str(v)


def open_results(path: str):
    """Open an antibunch HDF5 file for reading, also one left by a killed SWMR writer."""
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError:
        return h5py.File(path, "r", swmr=True)
