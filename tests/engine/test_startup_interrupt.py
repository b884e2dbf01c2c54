"""Ctrl-C while a step is still starting (a slow reset(), e.g. loading a model) under ``threads``.

The runner tears its ZeroMQ context down while the slow step's thread is still in reset(); that
step must then leave quietly and close its sockets, so the run ends (exit 130) instead of hanging
in ``Context.term()`` with a worker traceback on stderr.
"""
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import os, signal, sys, threading, time
    from engine import Graph, In, Node, TagBatch
    from engine.executors import run_graph
    from engine.testing import TestingSource

    class SlowStart(Node):
        tags = In(TagBatch)

        def reset(self):
            time.sleep(float(sys.argv[1]))

        def process(self, msg, port):
            return ()

    g = Graph("slowstart")
    src = g.add("src", TestingSource(n_batches=1000, delay_s=0.01))
    g.add("slow", SlowStart(), src)
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    t0 = time.monotonic()
    result = run_graph(g, "threads")
    print("STATUS", result.exit_status, round(time.monotonic() - t0, 1), flush=True)
""")


def test_sigint_while_a_thread_step_is_starting_ends_the_run(tmp_path):
    # reset() (30 s, uninterruptible like a numba compilation) outlasts the runner's whole
    # stop/abort budget (about 2 s): the run ends without waiting for it
    env = dict(os.environ, ANTIBUNCH_RUNTIME_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, "30"], capture_output=True, text=True,
                          timeout=90, env=env, cwd=os.getcwd())
    assert "STATUS abort" in proc.stdout, (proc.stdout, proc.stderr[-2000:])
    run_s = float(proc.stdout.split("STATUS abort")[1].split()[0])
    assert run_s < 12.0, f"the run waited {run_s} s for a step still starting"
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "ContextTerminated" not in proc.stderr


GRAPH = textwrap.dedent("""
    import time
    from engine import Graph, In, Node, TagBatch
    from engine.testing import TestingSource

    class SlowStart(Node):
        tags = In(TagBatch)

        def reset(self):
            time.sleep(60)  # like numba compiling on a cold cache

        def process(self, msg, port):
            return ()

    def build():
        g = Graph("slowproc")
        src = g.add("src", TestingSource(n_batches=1000, delay_s=0.01))
        g.add("slow", SlowStart(), src)
        return g
""")


def test_sigint_while_a_process_step_is_starting_is_an_interrupt_not_a_failure(tmp_path):
    # the runner has to kill the step that is still starting; that is the user's stop, not a failure
    import signal
    import time

    (tmp_path / "slowproc.py").write_text(GRAPH)
    env = dict(os.environ, ANTIBUNCH_RUNTIME_DIR=str(tmp_path / "rt"),
               PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", str(tmp_path / "slowproc.py"),
                             "--executor", "processes", "--no-live"], cwd=os.getcwd(), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list((tmp_path / "rt").glob("*/manifest.json")):  # the runner is up, workers starting
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, (out[-1500:], err[-1500:])
    assert "killed by signal" not in out + err and "failed" not in err
