"""Message types that travel between nodes.

Every message is a dataclass registered under a ``"name/version"`` type id
(:func:`register`). Fields that are NumPy arrays travel as raw frames on the
wire; every other field must be a msgpack-able scalar, string, list or dict
and travels in the header (see :mod:`engine.wire`).

All times are int64 picoseconds; names carry units (``t_begin_ps``,
``binwidth_ps``, ``exposure_s``).

Scan markers travel *in band* as tags on the negative marker channels
:data:`PIXEL`, :data:`LINE`, :data:`FRAME` and :data:`USER` so that chunking
can never separate a marker from its photons. At equal time, markers come
before photons (a photon at the tick of a pixel marker belongs to the new
pixel), and a combined record emits FRAME, LINE, PIXEL in that order.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

# ---------------------------------------------------------------- constants
PIXEL = -1  #: marker channel: pixel clock (SPC M0)
LINE = -2  #: marker channel: line clock (SPC M1)
FRAME = -3  #: marker channel: frame clock (SPC M2)
USER = -4  #: marker channel: user marker (SPC M3)
MARKER_CHANNELS = (PIXEL, LINE, FRAME, USER)

NO_DELAY = np.iinfo(np.int64).min  #: ``delay_ps`` of a tag without a TAC conversion

# TagBatch.flags bits
FLAG_GAP = 1  #: data were lost before this batch (hardware FIFO overflow)
FLAG_OVERFLOW = 2  #: a counter or macrotime overflow was seen
FLAG_FIFO_FULL = 4  #: the hardware FIFO was full while this batch was read

# Estimates.flags bits (per pixel)
EST_DARK = 1  #: too few events: g2_0 is NaN, the pixel is dark
EST_FAILED = 2  #: the estimator did not converge
EST_AT_BOUND = 4  #: a parameter ended on its bound
EST_NO_ERROR = 8  #: g2_0 without a finite error bar (singular information at the estimate, or no error head)
EST_T2_BOUND = 16  #: a fit's bunching time ended on its bound with bunching present: g2_0 may be biased
#: the scan's pooled histogram puts the emitter's antibunching time below the CNN's training range: its g2_0
#: is not valid there (use the 'wide' network or the MLE; nodes.cnn.prior_check)
EST_OUTSIDE_PRIOR = 32

_REGISTRY: dict[str, type] = {}


def register(type_id: str):
    """Class decorator registering a message dataclass under ``type_id``.

    ``type_id`` is ``"name/version"``; registering the same id twice with a
    different class is an error (it would make the wire ambiguous).
    """
    if "/" not in type_id:
        raise ValueError(f"message type id {type_id!r} must look like 'name/version'")

    def deco(cls):
        old = _REGISTRY.get(type_id)
        if old is not None and old.__qualname__ != cls.__qualname__:
            raise ValueError(f"message type id {type_id!r} already registered for {old.__name__}")
        cls.TYPE_ID = type_id
        _REGISTRY[type_id] = cls
        return cls

    return deco


def registered_types() -> dict[str, type]:
    return dict(_REGISTRY)


class Message:
    """Base of every message. Subclasses are dataclasses."""

    TYPE_ID: ClassVar[str] = ""

    def array_fields(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), np.ndarray)}

    def scalar_fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if not isinstance(getattr(self, f.name), np.ndarray)}


def _as(a, dtype) -> np.ndarray:
    a = np.asarray(a)
    return a if a.dtype == dtype else a.astype(dtype)


@register("tags/1")
@dataclass
class TagBatch(Message):
    """A batch of time tags covering ``[t_begin_ps, t_end_ps)`` completely.

    ``time_ps`` int64 ascending; ``channel`` int16 (detectors >= 0, markers
    negative); ``delay_ps`` int64 or None: start-stop (TAC) lag of the tag, or
    :data:`NO_DELAY`. No tag in the window means no photon, never missing
    data -- unless ``flags`` has :data:`FLAG_GAP`, which says data were lost
    *before* this batch.
    """

    time_ps: np.ndarray
    channel: np.ndarray
    t_begin_ps: int = 0
    t_end_ps: int = 0
    seq: int = 0
    flags: int = 0
    delay_ps: np.ndarray | None = None

    def __post_init__(self):
        self.time_ps = _as(self.time_ps, np.int64)
        self.channel = _as(self.channel, np.int16)
        if self.delay_ps is not None:
            self.delay_ps = _as(self.delay_ps, np.int64)
        self.t_begin_ps = int(self.t_begin_ps)
        self.t_end_ps = int(self.t_end_ps)

    def __len__(self) -> int:
        return len(self.time_ps)

    def check(self) -> None:
        """Raise ValueError if the batch breaks its contract (used by sources/tests)."""
        n = len(self.time_ps)
        if self.time_ps.ndim != 1 or self.channel.shape != (n,):
            raise ValueError(f"TagBatch seq {self.seq}: time_ps and channel must be 1-D of equal length")
        if self.delay_ps is not None and self.delay_ps.shape != (n,):
            raise ValueError(f"TagBatch seq {self.seq}: delay_ps must have the length of time_ps")
        if self.t_end_ps < self.t_begin_ps:
            raise ValueError(f"TagBatch seq {self.seq}: t_end_ps < t_begin_ps")
        if n:
            if np.any(np.diff(self.time_ps) < 0):
                i = int(np.argmax(np.diff(self.time_ps) < 0))
                raise ValueError(f"TagBatch seq {self.seq}: time_ps not ascending at index {i + 1}")
            if self.time_ps[0] < self.t_begin_ps or self.time_ps[-1] >= self.t_end_ps:
                raise ValueError(f"TagBatch seq {self.seq}: tags outside [t_begin_ps, t_end_ps)")


@register("hist/1")
@dataclass
class Histogram(Message):
    """A cumulative histogram snapshot (``kind='snapshot'``).

    ``counts`` int64, 1-D ``(n_bins,)`` or 2-D for two lag axes; ``lag_ps``
    float64 bin centres of the first axis (``lag2_ps`` of the second, 2-D
    only); ``binwidth_ps`` the bin width. ``singles`` per-channel counts and
    ``duration_ps`` the covered time, so the histogram can be normalised.
    """

    counts: np.ndarray
    lag_ps: np.ndarray
    binwidth_ps: int = 0
    t_begin_ps: int = 0
    t_end_ps: int = 0
    seq: int = 0
    kind: str = "snapshot"
    singles: np.ndarray | None = None
    lag2_ps: np.ndarray | None = None
    meta: dict = field(default_factory=dict)


@register("pixels/1")
@dataclass
class PixelHistograms(Message):
    """Cumulative state of the listed scan pixels (``kind='pixels'``).

    Each message carries the *full cumulative* values (summed over frames) of
    the pixels in ``pixel`` (flat index ``row * nx + col``), so it replaces
    whatever a consumer held for them; pixels not listed are unchanged.

    - ``counts`` int64 ``(k, n_bins)``: lag histogram per pixel
    - ``increments`` int64 ``(k, n_inc, n_bins)``: per-``increment_s``
      sub-histograms (index = increment within the pixel's accumulated dwell)
    - ``singles`` int64 ``(k, n_det)``: detected photons per detector
    - ``exposure_s`` float64 ``(k,)``: accumulated dwell time
    - ``coincidences`` int64 ``(k, 3)`` or None: zero-delay 2-, 3- and 4-fold
      coincidences among distinct detectors within ``coincidence_window_ps``
      (for g2(0)/g3(0,0) maps with three or more detectors)
    - ``lag_ps`` float64 ``(n_bins,)``: bin-centre lags; ``binwidth_ps``
    - ``shape`` ``[ny, nx]``; ``frame`` the frame being scanned;
      ``n_done`` pixels completed in total (all frames)
    """

    pixel: np.ndarray
    counts: np.ndarray
    singles: np.ndarray
    exposure_s: np.ndarray
    lag_ps: np.ndarray
    increments: np.ndarray | None = None
    coincidences: np.ndarray | None = None
    coincidence_window_ps: float = 0.0
    shape: list = field(default_factory=lambda: [1, 1])
    binwidth_ps: float = 0.0
    increment_s: float = 1.0
    frame: int = 0
    n_done: int = 0
    seq: int = 0
    t_end_ps: int = 0
    kind: str = "pixels"
    meta: dict = field(default_factory=dict)


@register("estimates/1")
@dataclass
class Estimates(Message):
    """Per-pixel g2(0) estimates for the listed pixels (flat index).

    ``g2_0`` and ``g2_0_err`` float64 ``(k,)`` (1-sigma, NaN where none);
    ``n_events`` float64 ``(k,)`` coincidences used; ``flags`` uint8 ``(k,)``
    (:data:`EST_DARK`, :data:`EST_FAILED`, :data:`EST_AT_BOUND`, :data:`EST_NO_ERROR`, :data:`EST_T2_BOUND`, :data:`EST_OUTSIDE_PRIOR`);
    ``method`` 'lm' | 'mle' | 'cnn'. ``extra`` holds optional per-pixel
    float64 arrays by name (e.g. fitted t1_ps).
    """

    pixel: np.ndarray
    g2_0: np.ndarray
    g2_0_err: np.ndarray
    n_events: np.ndarray
    flags: np.ndarray
    method: str = ""
    shape: list = field(default_factory=lambda: [1, 1])
    seq: int = 0
    compute_s: float = 0.0
    kind: str = "pixels"
    extra: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)


@register("image/1")
@dataclass
class Image(Message):
    """Snapshot of the images being assembled, all float64 ``(ny, nx)``.

    ``mask`` bool ``(ny, nx)``: pixels measured so far. ``images`` maps a name
    ('intensity', 'g2_0', 'g2_0_err', 'G2', 'G2_direct', 'G3', ...) to its
    array; on the wire each array travels as a frame. ``units`` maps the same
    names to unit strings.
    """

    mask: np.ndarray
    images: dict = field(default_factory=dict)
    units: dict = field(default_factory=dict)
    n_done: int = 0
    frame: int = 0
    seq: int = 0
    kind: str = "snapshot"
    meta: dict = field(default_factory=dict)


@register("descriptor/1")
@dataclass
class Descriptor(Message):
    """First message on every output port: what will follow.

    ``type_id`` of the data messages, ``port`` full id (``graph.step.port``),
    ``node`` class name, ``params`` of the producing node, ``units`` and
    ``info`` (dtype/shape/index-axis hints, free form but msgpack-able).
    """

    type_id: str
    port: str = ""
    node: str = ""
    params: dict = field(default_factory=dict)
    units: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


SUCCESS = "success"
ABORT = "abort"
FAIL = "fail"
_STATUS_RANK = {SUCCESS: 0, ABORT: 1, FAIL: 2}


def worst_status(*statuses: str) -> str:
    """The worst of several exit statuses (fail > abort > success)."""
    return max(statuses, key=lambda s: _STATUS_RANK.get(s, 2), default=SUCCESS)


@register("stop/1")
@dataclass
class Stop(Message):
    """Last message on every port. ``exit_status`` is 'success', 'abort' or 'fail'."""

    exit_status: str = SUCCESS
    counters: dict = field(default_factory=dict)
    reason: str = ""
