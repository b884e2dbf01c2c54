"""Experiment graphs: small modules exposing build(**params) -> Graph. Importing one does nothing."""
