"""Experiment graphs: small modules exposing build(**params) -> Graph. Importing one does nothing."""

#: antibunch plugin hook: the modules of this package are graphs addressable by name
graph_packages = [__name__]
