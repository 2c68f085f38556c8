"""Hot-path benchmarks behind `grpo bench`.

Each benchmark is a *case* (`bench.registry.Case`): a name, default sizes, the providers it compares,
a function that builds inputs for one (size, provider) and a function that runs one provider once.
`bench.runner` measures every (case, provider, tokens, vocab) in a fresh subprocess
(`python -m bench.worker JSON`): peak extra memory, time p20/p50/p80 over repeats after warmup, max
abs error against a float64 reference computed in the same run, and on CUDA the fraction of the
memory-bandwidth roofline. `bench.report` prints the rich table and the `--json` line.

Adding a case (e.g. `miner`, `train-step`, `tui`) is one new module:

    # bench/cases/miner.py
    from bench.registry import Case, register

    register(Case(
        name="miner", summary="mine 10k stream entries", providers=("ours",),
        tokens=(10_000,), vocabs=(None,), hidden=None,
        build=build_inputs,   # (Size, provider) -> dict of inputs
        run=run_once,         # (provider, inputs) -> dict of outputs (one call, what is timed)
        check=None,           # optional (inputs, outputs) -> {output name: max abs err vs float64}
    ))

Every module in `bench/cases/` is imported by `bench.registry.load()`, so the file is the whole step;
`grpo bench miner` then works, and `default=False` keeps it out of a bare `grpo bench`.
Heavy imports (torch, triton) stay inside functions so `import bench` is cheap.
"""
