"""What every file-writing sink shares: the overwrite policy and how a run ended.

**Overwrite policy.** A sink never silently replaces an earlier result: if its output file
exists, ``check()`` (run before acquisition starts) refuses with :class:`FileExistsError`
(the CLI prints one line and exits 2) unless the sink was given ``overwrite=True``
(``antibunch run ... --overwrite`` sets it on every sink of the graph). The file is created
only when the first data arrives, so a run that fails before acquisition leaves nothing
behind — neither a new half-written file nor a destroyed old one.

**How the run ended.** Before ``finish()`` the executor tells each step how its input streams
ended (``node.stream_status``: 'success', 'abort' or 'fail'). :func:`outcome` turns that into
the word a results file records: 'finished' (the source ended by itself), 'interrupted'
(Ctrl-C, SIGTERM, a duration limit: the data are partial) or 'failed'.

**Atomic files.** A file written in one go (a PNG) is written to a temporary name beside it
and renamed over the target (:func:`atomic_write`): a reader, a crash or a second Ctrl-C never
sees a half-written file — the target is either the complete new file or not there (or the old
one, with ``overwrite``).

Example::

    from sinks.output import check_output_path, outcome
    check_output_path(self, self.path, overwrite=self.overwrite, what="HDF5Sink")
    with atomic_write("scan.png") as tmp:
        fig.savefig(tmp)
"""
from __future__ import annotations

import contextlib
import os
import tempfile

FINISHED, INTERRUPTED, FAILED = "finished", "interrupted", "failed"


def check_output_path(node, path: str, *, overwrite: bool, what: str, suffix: str = "") -> None:
    """Refuse before acquisition a path that cannot be written or holds an earlier result."""
    full = os.path.abspath(path)
    d = os.path.dirname(full) or "."
    where = f"step '{node.step_id}' ({what}) cannot write '{path}'"
    if os.path.isdir(full):
        raise IsADirectoryError(f"{where}: it is a directory; give a file name" + (f" ending in {suffix}" if suffix
                                                                                   else ""))
    if not os.path.isdir(d):
        raise FileNotFoundError(f"{where}: directory '{d}' does not exist; create it or choose another path")
    if not os.access(d, os.W_OK):
        raise PermissionError(f"{where}: directory '{d}' is not writable; choose another path")
    if os.path.exists(full):
        if not overwrite:
            raise FileExistsError(f"{where}: the file exists (an earlier result is never replaced silently); "
                                  "choose another output path, move the file away, or rerun with --overwrite "
                                  "(overwrite=True)")
        if not os.access(full, os.W_OK):
            raise PermissionError(f"{where}: the file exists and is read-only; choose another path")


def outcome(node) -> str:
    """'finished', 'interrupted' or 'failed': how the streams into ``node`` ended."""
    status = getattr(node, "stream_status", None)
    if status is None:  # not told (an old executor): a stop order still means partial data
        stop = getattr(node, "stop_requested", False)
        status = "abort" if (stop() if callable(stop) else stop) else "success"
    return {"success": FINISHED, "abort": INTERRUPTED}.get(status, FAILED)


@contextlib.contextmanager
def atomic_write(path: str):
    """Yield a temporary path beside ``path`` (same extension, so writers that pick a format by
    the name still do); on success rename it over ``path`` (atomic on one file system), on any
    exit without success -- an error, KeyboardInterrupt -- remove it. Never a half-written file."""
    d, base = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(base)
    tmp = os.path.join(d, f".{stem}.{os.getpid()}.tmp{ext}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def refuse_existing(path: str, *, overwrite: bool, option: str) -> None:
    """For a command's output file ``option`` (e.g. '--png'): the same policy as every sink --
    an existing file is refused (FileExistsError: one line, exit 2) unless ``overwrite``."""
    full = os.path.abspath(path)
    d = os.path.dirname(full)
    if os.path.isdir(full):
        raise IsADirectoryError(f"{option} '{path}' is a directory; give a file name")
    if not os.path.isdir(d):
        raise FileNotFoundError(f"{option}: directory '{d}' does not exist; create it or choose another path")
    if os.path.exists(full) and not overwrite:
        raise FileExistsError(f"{option} '{path}' exists (an earlier result is never replaced silently); "
                              "choose another name, move the file away, or add --overwrite")
    try:  # a file must be creatable there: found now, not after the work is done
        with tempfile.NamedTemporaryFile(dir=d, prefix=".write-probe-"):
            pass
    except OSError as exc:
        raise PermissionError(f"{option}: cannot write in directory '{d}' ({exc.strerror or exc}); "
                              "choose another path") from None
