"""The main job's scan with the Levenberg–Marquardt fit (LMFit) instead of the CNN.

Same simulated scan as :mod:`graphs.scan_cnn` (two NVs, 32×32 over 775 nm, 1 s × 7 frames,
start–stop histograms 215 bins / 500 ns), for side-by-side comparison of estimators.

    antibunch run scan_lmfit
"""
from graphs.scan_cnn import make_build

build = make_build("scan_lmfit", "lm")
graph = build()
