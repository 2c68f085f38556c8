"""Hot-path benchmarks behind `grpo bench`."""
