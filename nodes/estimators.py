"""The g2(0) estimator nodes by name, and the input view they share.

:func:`make_estimator` turns the estimator choice of a scan graph (``'cnn'``, ``'mle'``,
``'lm'``) into the node (:class:`nodes.cnn.G2CNN`, :class:`nodes.mle.PoissonMLE`,
:class:`nodes.fit.LMFit`); :func:`unpack_message` gives those nodes one view of a
``PixelHistograms`` or ``Histogram`` input.

Example::

    g2 = g.add("g2", make_estimator("mle"), hist)
"""
from __future__ import annotations

import numpy as np

from engine.messages import Histogram

def is_real_number(value) -> bool:
    """Whether ``value`` is a real number for a numeric parameter: a Python or NumPy int or float, not a bool
    (which is an int to Python), a string or None — the estimators' argument checks refuse the rest."""
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, float, np.integer, np.floating))


#: estimator names accepted by :func:`make_estimator`
ESTIMATORS = ("cnn", "mle", "lm")


def make_estimator(estimator: str, **params):
    """``'cnn'`` | ``'mle'`` | ``'lm'`` -> a new estimator node built with ``params``.

    The CNN defaults to ``batch_size=1024`` (a scan line's worth of pixels several times over).
    Raises ValueError naming the choices for any other name.
    """
    if estimator == "cnn":
        from nodes.cnn import G2CNN

        params.setdefault("batch_size", 1024)
        return G2CNN(**params)
    if estimator == "mle":
        from nodes.mle import PoissonMLE

        return PoissonMLE(**params)
    if estimator == "lm":
        from nodes.fit import LMFit

        return LMFit(**params)
    raise ValueError(f"estimator must be 'lm', 'mle' or 'cnn'; got {estimator!r}")


def unpack_message(msg, step_id: str = "estimator") -> dict:
    """Common view of a ``PixelHistograms`` or ``Histogram`` message for the estimator nodes.

    Returns dict(pixel (k,), counts (k, n_bins) int64, lag_ps, binwidth_ps (float or None),
    singles (k, n_det) or None, exposure_s (k,) or None, shape [ny, nx]). A ``Histogram`` is
    pixel 0 of a 1×1 scan.
    """
    if isinstance(msg, Histogram):
        c = np.asarray(msg.counts)
        if c.ndim != 1:
            raise ValueError(f"step '{step_id}': g2(0) estimators take 1-D histograms; got counts shape {c.shape}")
        dur = (msg.t_end_ps - msg.t_begin_ps) * 1e-12
        singles = None if msg.singles is None else np.asarray(msg.singles, dtype=np.float64)[None]
        return {"pixel": np.array([0], np.int64), "counts": c[None].astype(np.int64),
                "lag_ps": np.asarray(msg.lag_ps, dtype=np.float64), "binwidth_ps": float(msg.binwidth_ps) or None,
                "singles": singles, "exposure_s": np.array([dur]) if dur > 0 else None, "shape": [1, 1]}
    c = np.asarray(msg.counts)
    if c.ndim != 2:
        raise ValueError(f"step '{step_id}': PixelHistograms counts must be (k, n_bins); got {c.shape}")
    return {"pixel": np.asarray(msg.pixel, dtype=np.int64), "counts": c.astype(np.int64, copy=False),
            "lag_ps": np.asarray(msg.lag_ps, dtype=np.float64), "binwidth_ps": float(msg.binwidth_ps) or None,
            "singles": None if msg.singles is None else np.asarray(msg.singles, dtype=np.float64),
            "exposure_s": None if msg.exposure_s is None else np.asarray(msg.exposure_s, dtype=np.float64),
            "shape": list(msg.shape)}
