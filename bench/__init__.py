"""Benchmarks: ``antibunch bench NAME [--json]``.

Each benchmark is a module ``bench/<name>.py`` exposing::

    def add_arguments(parser): ...           # optional extra CLI options
    def run(args) -> dict: ...                # measure; return JSON-able results
    def format_table(result: dict) -> str:    # optional human-readable table

Targets are ratios against a reference measured in the same run, never
absolute timings asserted in tests.
"""
BENCHES = {
    "transport": "bench.transport",
    "correlation": "bench.correlation",
    "simulator": "bench.simulator",
    "spc": "bench.spc",
    "estimators": "bench.estimators",
    "pipeline": "bench.pipeline",
    "formats": "bench.formats",
    "g2": "bench.g2",
}
