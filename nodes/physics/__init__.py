"""Pure physics and analysis functions: no Node, no I/O, no sockets."""
