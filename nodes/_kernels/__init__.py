"""numba kernels, one module per node family (module-level functions over arrays)."""
