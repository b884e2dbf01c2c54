"""CLI commands of the sinks: ``antibunch image FILE.h5`` re-renders and re-analyses saved images.

    antibunch image scan_cnn.h5                       # resolution table (FWHM, narrowing, pair dip)
    antibunch image scan_cnn.h5 --png again.png       # and the paper-style figure
    antibunch image scan.h5 --pixel-nm 24.2 --emitters-nm="-125,0;125,0" --json
"""
from __future__ import annotations

import json
import sys

from .hdf5 import layout
from .hdf5.layout import open_results


def add_commands(sub) -> None:
    p = sub.add_parser("image", help="resolution table / figure from the images of an antibunch HDF5 file")
    p.add_argument("file", help=f"HDF5 file written by HDF5Sink (needs /{layout.IMAGE})")
    p.add_argument("--png", default=None, help="also render the figure to this PNG")
    p.add_argument("--overwrite", action="store_true", help="replace the PNG if it exists (default: refuse)")
    p.add_argument("--pixel-nm", type=float, default=None,
                   help="pixel pitch in nm (default: field_nm/nx of the graph parameters stored in the file)")
    p.add_argument("--emitters-nm", default=None,
                   help="emitter positions --emitters-nm='x,y;x,y' in nm from the field centre (default: graph scene or found)")
    p.add_argument("--json", action="store_true", help="print the analysis as JSON")
    p.set_defaults(func=cmd_image)


def _parse_emitters(text):
    from engine.cli import UsageError

    try:
        pts = [tuple(float(v) for v in part.split(",")) for part in text.split(";") if part.strip()]
    except ValueError:
        raise UsageError(f"--emitters-nm: cannot parse {text!r}; write 'x,y;x,y' in nm") from None
    if not pts or any(len(p) != 2 for p in pts):
        raise UsageError(f"--emitters-nm: cannot parse {text!r}; write 'x,y;x,y' in nm")
    return pts


def load_images(path):
    """(images dict, mask, meta dict, graph params dict) from an antibunch HDF5 file."""
    import numpy as np

    from engine.cli import UsageError

    import os

    if not os.path.isfile(path):
        raise UsageError(f"file '{path}' does not exist")
    import h5py

    if not h5py.is_hdf5(path):
        raise UsageError(f"'{path}' is not an HDF5 file; give the .h5 written by 'antibunch run' (HDF5Sink)")
    with open_results(path) as f:
        if layout.IMAGE not in f:
            raise UsageError(f"'{path}' has no /{layout.IMAGE}: was an ImageAssembler connected to the "
                             "HDF5Sink 'image' input?")
        g = f[layout.IMAGE]
        images = {k: g[k][()] for k in g if k != "mask"}
        mask = g["mask"][()].astype(bool) if "mask" in g else np.isfinite(images.get("intensity"))
        meta = json.loads(g.attrs.get("meta_json", "{}"))
        meta["frame"] = int(g.attrs.get("frame", 0))
        meta["n_done"] = int(g.attrs.get("n_done", mask.sum()))
        meta["units"] = {k: str(g[k].attrs.get("units", "")) for k in images}
        meta["status"] = layout.status(f)
        params = {}
        if layout.GRAPH in f:
            params = json.loads(f[layout.GRAPH].attrs.get("params_json", "{}"))
    return images, mask, meta, params


def load_pixels(path):
    """The saved per-pixel histograms as one PixelHistograms message, or None."""
    import numpy as np

    from engine.messages import PixelHistograms

    with open_results(path) as f:
        if layout.PIXEL_COUNTS not in f:
            return None
        g = f[layout.PIXELS]
        counts = g["counts"][()]
        ny, nx, nb = counts.shape
        return PixelHistograms(pixel=np.arange(ny * nx), counts=counts.reshape(-1, nb),
                               singles=g["singles"][()].reshape(ny * nx, -1),
                               exposure_s=g["exposure_s"][()].ravel(), lag_ps=g["lag_ps"][()],
                               binwidth_ps=float(g.attrs.get("binwidth_ps", 0.0)), shape=[ny, nx])


def load_estimates(path):
    """The saved per-pixel estimates as one Estimates message, or None."""
    import numpy as np

    from engine.messages import Estimates

    with open_results(path) as f:
        if layout.ESTIMATES_G2 not in f:
            return None
        g = f[layout.ESTIMATES]
        ny, nx = g["g2_0"].shape
        return Estimates(pixel=np.arange(ny * nx), g2_0=g["g2_0"][()].ravel(), g2_0_err=g["g2_0_err"][()].ravel(),
                         n_events=g["n_events"][()].ravel(), flags=g["flags"][()].ravel(),
                         method=str(g.attrs.get("method", "")), shape=[ny, nx])


def cmd_image(args) -> int:
    import numpy as np

    from engine.cli import UsageError, print_json
    from engine.messages import Image
    from nodes.physics.resolution import analyze, summary_table

    images, mask, meta, params = load_images(args.file)
    ny, nx = mask.shape
    pixel_nm = args.pixel_nm
    if pixel_nm is None and params.get("field_nm"):
        pixel_nm = float(params["field_nm"]) / nx
    if pixel_nm is None:
        raise UsageError("the file does not say the pixel size; pass --pixel-nm")
    em = None
    if args.emitters_nm:
        em = _parse_emitters(args.emitters_nm)
    elif params.get("separation_nm") is not None:
        d = float(params["separation_nm"]) / 2
        em = [(-d, 0.0), (d, 0.0)]
    from .figures import FigureSink, emitters_to_px, headline

    frames = params.get("frames")
    frames = int(frames) if isinstance(frames, (int, float)) and frames >= 1 else None
    status = {"running": "unfinished", "": "unfinished"}.get(meta["status"], meta["status"])
    _, partial = headline(meta["n_done"], (ny, nx), frames, status)
    if partial:  # an interrupted (or unfinished) run: say so before any number
        print(f"{partial} (file status '{meta['status'] or 'none'}'): the results "
              f"{'' if args.json else 'below '}are from the partial images", file=sys.stderr if args.json else sys.stdout)
    res = analyze(images, pixel_nm, emitters_px=emitters_to_px(em, (ny, nx), pixel_nm) if em else None)
    if args.png:
        import os

        name = params.get("name") or os.path.basename(args.file)
        sep = params.get("separation_nm")
        title = f"{os.path.basename(args.file)}" + (f": two NVs {float(sep):g} nm apart" if sep is not None else "")
        sink = FigureSink(args.png, pixel_nm=pixel_nm, emitters_nm=tuple(em) if em else None, print_summary=False,
                          title=title, overwrite=args.overwrite, frames=frames)
        sink.check()
        sink.reset()
        sink.status = status  # a partial scan's figure is marked PARTIAL with the visits
        hist = load_pixels(args.file)
        if hist is not None:
            sink.process(hist, "hist")
        est = load_estimates(args.file)
        if est is not None:
            sink.process(est, "g2")
        sink.process(Image(mask=mask, images=images, units=meta["units"], meta=meta, n_done=meta["n_done"],
                           frame=int(meta.get("frame", 0))), "image")
        sink.render()
    if args.json:
        def strip(o):
            if isinstance(o, dict):
                return {k: strip(v) for k, v in o.items() if k not in ("profiles", "s_px", "profile", "profile_err")}
            if isinstance(o, (list, tuple)):
                return [strip(v) for v in o]
            if isinstance(o, float) and not np.isfinite(o):
                return None
            return o

        print_json({**strip(res), "status": meta["status"], "pixel_visits_done": meta["n_done"],
                    "pixel_visits_expected": ny * nx * frames if frames else None, "partial": partial})
    else:
        print(summary_table(res, title=args.file))
    return 0
