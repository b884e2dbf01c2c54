"""The CNN's prior check: is a scan's emitter inside a network's training range of antibunching times?

One pixel cannot tell a dip narrower than a bin (t1 0.8 ns at 2.3-ns bins) from a shallower, wider one; the
pooled histogram of a scan's pixels (one kind of emitter) can. :func:`prior_check` fits it twice by Poisson
maximum likelihood — t1 free and t1 held at the network's training floor — and calls the scan outside when
the free t1 lies below the floor and the held fit is worse by :data:`PRIOR_CHECK_NLL`. The G2CNN node
(:mod:`nodes.cnn`) then switches to the 'wide' network or flags its estimates ``EST_OUTSIDE_PRIOR``
(docs/estimators.md, *Two shipped networks and the prior check*).

Example::

    r = prior_check(counts, lag_ps, ranges_of(meta))   # counts (N, n_bins): the scan's pixels
    if r["outside"]: ...                               # r: outside, events, t1_ns, t1_floor_ns, dnll
"""
from __future__ import annotations

import numpy as np

from engine.messages import EST_DARK, EST_OUTSIDE_PRIOR

from .physics import g2model

#: the prior check (:func:`prior_check`): the pooled histogram of a scan (its pixels summed: one kind of
#: emitter) says the antibunching time lies below the network's training range when the best fit with t1 held at
#: the range's floor is worse than the free fit by PRIOR_CHECK_NLL (Δχ² = 25, 5σ: repeated as the scan grows,
#: so strict); below PRIOR_CHECK_MIN_EVENTS pooled events it does not decide
PRIOR_CHECK_NLL = 12.5
PRIOR_CHECK_MIN_EVENTS = 20_000
#: ... and only when the free fit's t1 lies at least this far below the floor (a fraction of it): a pooled scan
#: is never exactly the model (pixels differ in bunching time with the pump power across the spot), and that
#: misfit alone pulled t1 from 1.6 to 1.42-1.44 ns with ΔNLL 14-27 at 2·10⁷ pooled events (measured)
PRIOR_CHECK_T1_FRACTION = 0.8


def prior_check(counts, lag_ps, ranges: dict, binwidth_ps=None) -> dict:
    """Is the emitter of these histograms inside the network's training range of antibunching times?

    ``counts (N, n_bins)`` are summed into one pooled histogram (the pixels of a scan: one kind of emitter, so
    the scan decides what no single pixel can) and fitted twice by Poisson ML (:func:`nodes.mle.t1_floor_fits`):
    t1 free and t1 held at or above the floor of ``ranges['t1_ns']`` (:func:`nodes.cnn.training_ranges`). ``outside``
    is True when the free fit's t1 lies below :data:`PRIOR_CHECK_T1_FRACTION` of the floor and the held fit is
    worse by at least :data:`PRIOR_CHECK_NLL`; False when the pooled data agree with the range; None (undecided) below
    :data:`PRIOR_CHECK_MIN_EVENTS` pooled events or when a fit failed. Returns ``outside``, ``events``,
    ``t1_ns`` (free fit), ``t1_floor_ns``, ``dnll``. A scan of several kinds of emitter is one pooled shape:
    the check then speaks for the mixture."""
    from .mle import t1_floor_fits

    c = np.asarray(counts)
    pooled = c.reshape(-1, c.shape[-1]).sum(axis=0)
    floor = float(ranges["t1_ns"][0])
    out = {"outside": None, "events": int(pooled.sum()), "t1_ns": float("nan"), "t1_floor_ns": floor,
           "dnll": float("nan")}
    if out["events"] < PRIOR_CHECK_MIN_EVENTS or floor <= g2model.BOUNDS["t1_ns"][0]:
        return out
    r = t1_floor_fits(pooled[None], lag_ps, floor, binwidth_ps)
    if r["ok"][0]:
        dnll = max(float(r["nll_floor"][0] - r["nll_free"][0]), 0.0)
        t1 = float(r["t1_ns"][0])
        out.update(t1_ns=t1, dnll=dnll, outside=bool(t1 <= PRIOR_CHECK_T1_FRACTION * floor and dnll >= PRIOR_CHECK_NLL))
    return out


def flag_outside_prior(flags, pc) -> int:
    """Set ``EST_OUTSIDE_PRIOR`` on the bright (not ``EST_DARK``) entries of ``flags`` (in place) where the prior
    check ``pc`` found the scan outside the range of the network that estimated it (no switch to another
    network); returns how many were flagged."""
    if not (pc and pc["outside"] and "network" not in pc):
        return 0
    bright = (flags & EST_DARK) == 0
    flags[bright] |= EST_OUTSIDE_PRIOR
    return int(bright.sum())


def ranges_of(meta: dict) -> dict:
    """The training ranges recorded in a network's metadata (those of the default population where none are)."""
    from .physics.populations import TRAIN

    rec = ((meta or {}).get("training") or {}).get("population_ranges") or TRAIN
    return {k: tuple(v) if isinstance(v, list) else v for k, v in rec.items()}


def training_ranges(weights=None) -> dict:
    """The population ranges the network ``weights`` was trained on (from its .json; no torch), e.g.
    ``{'t1_ns': [1.5, 100.0, 'log'], ...}``; the default training population's where the file records none."""
    import json

    from .cnn import weights_path
    from .physics.populations import TRAIN

    meta_path = weights_path(weights).with_suffix(".json")
    try:
        return ranges_of(json.loads(meta_path.read_text()))
    except (OSError, ValueError):
        return dict(TRAIN)
