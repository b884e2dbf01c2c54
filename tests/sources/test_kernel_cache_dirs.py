"""The simulator and SPC kernels inline helpers and constants from sibling modules: their numba cache must
be stamped with all the directory's sources (nodes._kernels._cache), or an edited helper would be served stale."""


def test_source_kernel_directories_use_the_package_stamped_cache():
    from nodes._kernels._cache import _registered
    from sources.simulator._kernels import photons, rng, tac
    from sources.spc import decode, encode

    for mod in (photons, rng, tac, decode, encode):
        assert _registered(mod.__file__), mod.__name__
    assert type(photons.emitter_block._cache._impl.locator).__module__ == "nodes._kernels._cache"
