"""The main job's scan with the Levenberg–Marquardt fit (LMFit) instead of the CNN.

Same simulated scan as :mod:`graphs.scan_cnn` (two NVs, 32×32 over 775 nm, 1 s × 7 frames,
start–stop histograms 215 bins / 500 ns), for side-by-side comparison of estimators.

    antibunch run scan_lmfit
"""
from graphs.scan_cnn import build_scan


def build(shape=(32, 32), separation_nm=250.0, dwell_s=1.0, frames=7, seed=0, out="scan_lmfit.h5", png="auto",
          live=True, save_tags=False, realtime=False, brightness_cps=60_000.0, background_cps=1000.0):
    return build_scan("scan_lmfit", "lm", shape=shape, separation_nm=separation_nm, dwell_s=dwell_s, frames=frames,
                      seed=seed, out=out, png=png, live=live, save_tags=save_tags, realtime=realtime,
                      brightness_cps=brightness_cps, background_cps=background_cps)


graph = build()
