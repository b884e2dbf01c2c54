"""What every command shares: the user-error type, JSON output, terminal detection."""
from __future__ import annotations

import argparse
import json
import os
import sys


class UsageError(Exception):
    """An error the user can fix; printed without traceback, exit code 2."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` shows every option's default (and keeps descriptions as written)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or not _shows(default) or not action.option_strings
                or action.help == argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


def print_json(obj) -> None:
    from ..node import plain

    sys.stdout.write(json.dumps(plain(obj), indent=2) + "\n")


def is_terminal() -> bool:
    return sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose options all show their default in ``--help``."""

    def __init__(self, *args, **kw):
        kw.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kw)

    def add_argument(self, *args, **kw):
        if "help" not in kw and args and str(args[0]).startswith("-") \
                and _shows(kw.get("default")):
            kw["help"] = "default: %(default)s"  # argparse prints no line for an option without help
        return super().add_argument(*args, **kw)


def _shows(default) -> bool:
    """A default worth printing (not None/False/empty, which say 'off')."""
    return not (default is None or default is False or default is argparse.SUPPRESS
                or (isinstance(default, (list, tuple)) and not default))
