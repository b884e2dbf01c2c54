"""``antibunch warmup``: compile every plugin's numba kernels once (cached on disk)."""
from __future__ import annotations


def add_commands(sub) -> None:
    p = sub.add_parser("warmup", help="compile and cache every numba kernel (first run only)")
    p.set_defaults(func=cmd_warmup)


def cmd_warmup(args) -> int:
    import time

    from .. import plugins

    t0 = time.monotonic()
    n = 0
    for name, hook in plugins.warmup_hooks():
        for warmed in hook() or ():
            n += 1
            print(f"  warmed {warmed}", flush=True)
    print(f"warmed {n} kernel modules in {time.monotonic() - t0:.1f} s (cached on disk by numba)")
    return 0
