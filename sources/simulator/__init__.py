"""Exact photon simulator: NV centres, confocal optics, detectors, SPC-150 TAC, scanning stage.

``Simulator`` is a :class:`engine.node.Source` emitting what the instrument
records -- individual time tags, not histograms sampled from a formula.

Physics (all exact; no per-photon Python; numba kernels in
``sources/simulator/_kernels/``; background in docs/simulator.md):

- **Emitters** (:class:`NV`): three-level rate model, rates in **1/ns**
  (``k12_per_ns`` pump, ``k21_per_ns`` decay of the excited state -- every
  such decay emits a photon that is detected with probability ``eta`` -- ,
  ``k23_per_ns`` intersystem crossing, ``k31_per_ns`` metastable decay).
  After a detection the emitter is in its ground state, so each emitter's
  detected stream is a renewal process with the phase-type inter-event law
  of the rate model; it is sampled exactly (rejection from the closed-form
  density, plus the exact level state at every rate change, see
  :mod:`sources.simulator.phasetype`). The emitters start in their stationary state.
- **Purity floor** ``g0``: an uncorrelated Poisson stream from the same spot
  at ``(1/rho - 1)`` times the emitter's mean detected rate, with
  ``rho = sqrt(1 - g0)``; the emitter's light then has
  ``g2(tau) = 1 + rho**2 (g2_3level(tau) - 1)``, so ``g2(0) = g0`` exactly.
- **Brightness**: ``brightness_cps`` is the emitter's total detected count
  rate (all detectors, floor included) at the centre of the PSF; ``eta`` is
  derived from it. Default 60 kcps, i.e. ~30 kcps per detector with two
  detectors (a typical confocal NV rate); ``saturation = k12/k_sat`` at the
  PSF centre (default 1).
- **Optics**: Gaussian PSF ``h`` (FWHM ``psf_fwhm_nm``, default 310 nm). By
  default it scales the detection efficiency (``eta * h``; photophysics and
  g2 shape the same everywhere; the intensity image has exactly the PSF).
  ``excitation_saturation=True`` scales the pump instead (``k12 * h``), so the
  emitter's own saturation shapes the image and t1/t2/a vary across it.
  Background (``background_cps``: total detected background light, all
  detectors) is uniform Poisson light; a random beam splitter sends each
  photon to detector d with probability ``split[d]`` (default equal);
  ``dark_cps`` per detector. Each detector has a non-paralysable dead time
  (``dead_time_ps``, on true arrival times), afterpulsing (each registered
  avalanche makes, with probability ``afterpulse_prob``, an afterpulse
  ``dead_time_ps + Exp(afterpulse_delay_ps)`` later, itself subject to dead
  time and afterpulsing) and Gaussian timing jitter (``jitter_ps`` sigma,
  truncated at 8 sigma).
- **SPC-150 start-stop** (``output='start_stop'`` or ``'both'``): a photon on
  ``start_channel`` starts the TAC if it is free; the stop is the first
  photon on ``stop_channel`` arriving ``zero_delay_ps`` later (cable delay):
  valid iff ``t_stop + zero_delay_ps - t_start < tac_range_ps``. Then
  ``microtime_bin = floor((t_stop + zero_delay_ps - t_start) * 4096 /
  tac_range_ps)`` (12-bit ADC, ``ADC = 4095 - bin``) and
  ``delay_ps = tac_delay_ps(bin, tac_range_ps, zero_delay_ps)``. The TAC is
  busy until the stop arrives plus ``tac_dead_time_ps`` (or, without a
  stop, until the ramp ends at ``t_start + tac_range_ps``, plus the dead
  time). Starts while busy are lost.
- **Scanning** (``shape=(ny, nx)``): row = line (y), column = pixel (x).
  Pixel ``(iy, ix)`` of frame ``f`` starts at
  ``f*frame_ps + iy*line_ps + ix*dwell_ps`` with
  ``line_ps = nx*dwell_ps + flyback_ps`` and ``frame_ps = ny*line_ps``; each
  line (also the last of a frame) is followed by ``line_flyback_s`` during
  which the beam already sits on the first pixel of the next line (photons
  of the flyback are real, belong to no pixel). The stream ends at the end
  of the last pixel of the last frame (no trailing flyback). Pixel centres
  are at ``x = (ix - (nx-1)/2) * pixel_nm``, ``y = (iy - (ny-1)/2) *
  pixel_nm``: the scene origin is the centre of the field. Markers as an
  SPC-150 in FIFO-image mode records them: one PIXEL tag at every pixel
  start; at the first pixel of a line LINE and PIXEL (and FRAME first for the
  first line of a frame) at the same ``time_ps`` in the order FRAME, LINE,
  PIXEL. Markers come before photons at equal times.
- **Static** mode (``shape=None``, ``duration_s``): the beam stays at
  ``position_nm``.

Time: the acquisition covers ``[0, t_end_ps)``. Light, detectors and TAC are
also simulated for a short pre-roll before 0 and post-roll after the end, so
the stream is stationary from its first tag and conversions near the end are
complete; tags outside ``[0, t_end_ps)`` are dropped.

Tags (the contract):

- ``output='t2'``: every registered detection, channel = detector index,
  ``delay_ps=None``.
- ``output='start_stop'``: only valid TAC conversions: ``time_ps`` = start
  photon time, channel = start detector, ``delay_ps`` = quantised lag.
- ``output='both'``: all T2 tags; start-channel tags that triggered a valid
  conversion carry ``delay_ps``, all others (markers too) ``NO_DELAY``.

With ``realtime=True`` and ``fifo_records=N`` the paced stream goes through
a model of the SPC-150 hardware FIFO (:mod:`sources.fifo`): when the graph
falls behind, records are lost visibly (``FLAG_GAP | FLAG_FIFO_FULL`` on the
next batch, counters ``fifo_overflows``, ``fifo_records_lost``,
``fifo_max_fill``), never silently.

Batches tile ``[0, t_end_ps)``: ``[k*batch_duration_ps, (k+1)*batch_duration_ps)``
(the last one shorter), optionally split further so that none holds more than
``batch_max_tags`` tags. The same ``seed`` gives identical tags whatever the
batch parameters (the random stream is consumed in internal blocks whose
layout depends only on the physics parameters). ``realtime=True`` paces the
batches to the wall clock.

Parameters: see the ``Param`` declarations of :class:`Simulator`.
Ports: ``out`` (TagBatch).

Example::

    from sources.simulator import Simulator, two_nvs
    sim = Simulator(scene=two_nvs(separation_nm=250), shape=(32, 32), dwell_s=1.0, frames=7, seed=1)
    g.add("tags", sim)
    # static HBT: 10 s of T2 tags from one NV
    hbt = Simulator(duration_s=10.0, output="t2", seed=2)

Theory helpers (rates in 1/ns, lags in ps): :func:`three_level_taus`,
:func:`g2_three_level`, :func:`steady_state_rate`, :func:`saturation_k12`,
:func:`expected_histogram` (:mod:`.photophysics`); :func:`tac_delay_ps`, :func:`tac_bin`
(:mod:`.tac`).

Modules: :mod:`.photophysics` (closed-form theory), :mod:`.scene` (emitters and
scenes), :mod:`.phasetype` (the inter-detection law), :mod:`.source` (the
``Simulator`` node), :mod:`.batcher` (batches and pacing), ``_kernels/`` (numba:
``photons`` = random numbers, emitters, Poisson light, detectors; ``tac`` = the
SPC-150 start-stop rule).
"""

from __future__ import annotations

from .batcher import Batcher
from .phasetype import Rows, ph_moments, ph_setup, sample_inter_event
from .photophysics import (excited_population, expected_histogram, g2_three_level, saturation_k12,
                           steady_state_rate, three_level_taus)
from .scene import NV, SCENES, Scene, random_field, single_nv, three_nvs, two_nvs
from .source import FWHM_TO_SIGMA, Simulator, warmup
from .tac import tac_bin, tac_delay_ps

__all__ = ["Batcher", "FWHM_TO_SIGMA", "NV", "Rows", "SCENES", "Scene", "Simulator", "excited_population",
           "expected_histogram", "g2_three_level", "ph_moments", "ph_setup", "random_field", "sample_inter_event",
           "saturation_k12", "single_nv", "steady_state_rate", "tac_bin", "tac_delay_ps", "three_level_taus",
           "three_nvs", "two_nvs", "warmup"]
