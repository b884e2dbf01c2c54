"""Scene model: NV emitters (three-level rate model, brightness, purity floor) at positions in nm.

Positions are measured from the centre of the scanned field (the simulator's
pixel ``(ny-1)/2, (nx-1)/2``); x is the pixel (column) axis, y the line (row)
axis. Scene factories: :func:`single_nv`, :func:`two_nvs`, :func:`three_nvs`,
:func:`random_field` (``SCENES`` maps their names for the command line).

Example::

    from sources.simulator import NV, Scene, two_nvs
    sc = two_nvs(separation_nm=250, brightness_ratio=2.0, g0=0.1)
    custom = Scene((NV(0.0, 0.0), NV(200.0, 50.0, brightness_cps=30_000.0)), "pair")
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

import numpy as np

from .photophysics import saturation_k12, steady_state_rate, three_level_taus


@dataclass(frozen=True)
class NV:
    """One NV centre (three-level emitter) at ``(x_nm, y_nm)`` from the scan centre.

    ``brightness_cps``: total detected count rate (all detectors, purity
    floor included) at the centre of the PSF. ``saturation``: pump
    ``k12/k_sat`` at the PSF centre. Rates in 1/ns (defaults: 1/20, 1/100,
    1/200 ns^-1; typical room-temperature NV values, see docs/simulator.md). ``g0``: purity floor, g2(0) of the
    emitter's own light (0 = ideal single photon emitter).
    """

    x_nm: float = 0.0
    y_nm: float = 0.0
    brightness_cps: float = 60_000.0
    saturation: float = 1.0
    k21_per_ns: float = 1.0 / 20.0
    k23_per_ns: float = 1.0 / 100.0
    k31_per_ns: float = 1.0 / 200.0
    g0: float = 0.0

    def __post_init__(self):
        for name in ("brightness_cps", "saturation", "k21_per_ns", "k31_per_ns"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"NV parameter '{name}' must be a positive finite number; got {v!r}")
        if not (self.k23_per_ns >= 0 and math.isfinite(self.k23_per_ns)):
            raise ValueError(f"NV parameter 'k23_per_ns' must be >= 0; got {self.k23_per_ns!r}")
        if not (0.0 <= self.g0 < 1.0):
            raise ValueError(f"NV parameter 'g0' (purity floor) must be in [0, 1); got {self.g0!r}")

    @property
    def k_sat_per_ns(self) -> float:
        return saturation_k12(self.k21_per_ns, self.k23_per_ns, self.k31_per_ns)

    @property
    def k12_per_ns(self) -> float:
        """Pump rate at the PSF centre (1/ns)."""
        return self.saturation * self.k_sat_per_ns

    @property
    def rho(self) -> float:
        """Fraction of the emitter's detected light that is antibunched: sqrt(1 - g0)."""
        return math.sqrt(1.0 - self.g0)

    @property
    def eta(self) -> float:
        """Detection efficiency (all detectors) that gives ``brightness_cps`` in focus."""
        emit = steady_state_rate(self.k12_per_ns, self.k21_per_ns, self.k23_per_ns, self.k31_per_ns)
        return float(self.rho * self.brightness_cps / emit)

    def taus(self):
        """``(tau1_ps, tau2_ps, a)`` at the PSF centre."""
        return three_level_taus(self.k12_per_ns, self.k21_per_ns, self.k23_per_ns, self.k31_per_ns)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Scene:
    """A set of emitters (positions in nm from the scan centre) and a name."""

    emitters: tuple = ()
    name: str = "scene"

    def to_dict(self) -> dict:
        return {"name": self.name, "emitters": [e.to_dict() for e in self.emitters]}


def single_nv(x_nm=0.0, y_nm=0.0, **nv) -> Scene:
    """One NV at ``(x_nm, y_nm)``; keyword arguments go to :class:`NV`."""
    return Scene((NV(x_nm, y_nm, **nv),), "single_nv")


def two_nvs(separation_nm=600.0, angle_deg=0.0, brightness_ratio=1.0, **nv) -> Scene:
    """Two NVs ``separation_nm`` apart, symmetric about the centre, along ``angle_deg`` (0 = x axis).

    The second is ``brightness_ratio`` times as bright as the first.
    Separations between 186 and 263 nm test super-resolution at FWHM 310 nm.
    """
    if not (isinstance(separation_nm, numbers.Real) and math.isfinite(separation_nm) and separation_nm >= 0):
        raise ValueError(f"two_nvs: separation_nm is the distance between the two NVs and must be a finite number "
                         f">= 0 nm; got {separation_nm!r}")
    if not (isinstance(brightness_ratio, numbers.Real) and math.isfinite(brightness_ratio) and brightness_ratio > 0):
        raise ValueError(f"two_nvs: brightness_ratio must be a finite number > 0; got {brightness_ratio!r}")
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    h = separation_nm / 2.0
    b = nv.pop("brightness_cps", NV.brightness_cps)
    return Scene((NV(-h * c, -h * s, brightness_cps=b, **nv),
                  NV(h * c, h * s, brightness_cps=b * brightness_ratio, **nv)), f"two_nvs({separation_nm:g})")


def three_nvs(side_nm=300.0, brightness=(1.0, 1.0, 1.0), **nv) -> Scene:
    """Three NVs on an equilateral triangle of side ``side_nm`` centred on the origin.

    ``brightness``: relative brightness factors of the three emitters.
    """
    b = nv.pop("brightness_cps", NV.brightness_cps)
    r = side_nm / math.sqrt(3.0)
    ems = []
    for k in range(3):
        phi = math.radians(90.0 + 120.0 * k)
        ems.append(NV(r * math.cos(phi), r * math.sin(phi), brightness_cps=b * brightness[k], **nv))
    return Scene(tuple(ems), f"three_nvs({side_nm:g})")


def random_field(n=5, seed=0, field_nm=(775.0, 775.0), brightness_cps=(20_000.0, 100_000.0),
                 saturation=(0.3, 3.0), lifetime_ns=(12.0, 25.0), isc_ns=(50.0, 150.0),
                 metastable_ns=(150.0, 300.0), g0=(0.0, 0.3)) -> Scene:
    """``n`` NVs uniformly in a ``field_nm`` (width, height) rectangle centred on the origin.

    Each parameter is drawn uniformly from its (low, high) range
    (ranges typical of NV centres in nanodiamonds, see docs/simulator.md): brightness, saturation, lifetime
    1/k21, ISC time 1/k23, metastable lifetime 1/k31 (ns) and purity floor g0.
    """
    rng = np.random.default_rng(seed)
    ems = []
    for _ in range(int(n)):
        x = rng.uniform(-field_nm[0] / 2, field_nm[0] / 2)
        y = rng.uniform(-field_nm[1] / 2, field_nm[1] / 2)
        ems.append(NV(float(x), float(y), brightness_cps=float(rng.uniform(*brightness_cps)),
                      saturation=float(rng.uniform(*saturation)),
                      k21_per_ns=1.0 / float(rng.uniform(*lifetime_ns)),
                      k23_per_ns=1.0 / float(rng.uniform(*isc_ns)),
                      k31_per_ns=1.0 / float(rng.uniform(*metastable_ns)),
                      g0=float(rng.uniform(*g0))))
    return Scene(tuple(ems), f"random_field({n}, seed={seed})")


SCENES = {"single_nv": single_nv, "two_nvs": two_nvs, "three_nvs": three_nvs, "random_field": random_field}
