"""Fused GRPO kernels: Triton on CUDA, a chunked Torch implementation everywhere else.

`import kernels` never imports triton; the backend is chosen on first use.
"""
