"""Benchmark cases: every module here registers its cases with `bench.registry.register` on import."""
