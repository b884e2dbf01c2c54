"""The ``antibunch`` console script: Ctrl-C while the CLI is still being imported exits 130 quietly.

The generated script imports this (tiny) module, then calls :func:`main`; the CLI itself, whose
imports take a second or more on a cold start, is imported inside the guard.
"""
import sys


def _load():
    from .cli import main

    return main


def main(argv=None):
    try:
        cli_main = _load()
    except KeyboardInterrupt:  # nothing has started: no data acquired, no files written
        print("antibunch: interrupted during start-up (SIGINT): nothing started, no files written", file=sys.stderr)
        return 130
    return cli_main(argv)
