"""Test graph for the processes executor's fork server: src -> heavy -> sink.

``heavy`` imports a module in its warm-up (a stand-in for torch in a CNN step); every step
writes, when it finishes, which process it ran in and whether that module was loaded there.
"""
import importlib.util
import json
import os
import sys

from engine import Graph, In, Node, Out, Param, TagBatch
from engine.testing import TestingSource

HEAVY = "antibunch_test_heavy_module"


def _note(path, step):
    if path:
        with open(os.path.join(path, f"{step}.json"), "w") as fh:
            with open("/proc/self/comm") as c, open("/proc/self/cmdline", "rb") as a:
                comm, cmdline = c.read().strip(), a.read().replace(b"\0", b" ").decode().strip()
            json.dump({"pid": os.getpid(), "ppid": os.getppid(), "heavy": HEAVY in sys.modules,
                       "comm": comm, "cmdline": cmdline, "malloc": os.environ.get("MALLOC_MMAP_THRESHOLD_")}, fh)


class Heavy(Node):
    """Passes tags through; its warm-up imports a module the other steps never need."""

    tags = In(TagBatch)
    out = Out(TagBatch)
    notes = Param(str, default="")

    def warmup(self):
        spec = importlib.util.spec_from_loader(HEAVY, loader=None)
        sys.modules[HEAVY] = importlib.util.module_from_spec(spec)

    def process(self, msg, port):
        yield msg

    def finish(self):
        _note(self.notes, "heavy")
        return ()


class Count(Node):
    tags = In(TagBatch)
    notes = Param(str, default="")

    def reset(self):
        self.n = 0

    def process(self, msg, port):
        self.n += len(msg)
        return ()

    def finish(self):
        _note(self.notes, "sink")
        return ()


class Src(TestingSource):
    notes = Param(str, default="")

    def generate(self):
        yield from super().generate()
        _note(self.notes, "src")


def build(notes="", n_batches=5):
    g = Graph("heavy")
    src = g.add("src", Src(n_batches=n_batches, notes=notes))
    h = g.add("heavy", Heavy(notes=notes), src)
    g.add("sink", Count(notes=notes), h)
    return g


graph = build()
