"""kernels.layout: 16-element aligned row strides for (n, v) buffers, whatever v."""

from __future__ import annotations

import pytest
import torch

from kernels.layout import ROW_ALIGN, aligned_rows, padded_width


@pytest.mark.parametrize("v, want", [(0, 0), (1, 16), (16, 16), (17, 32), (50257, 50272), (151936, 151936)])
def test_padded_width(v, want):
    assert padded_width(v) == want


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_aligned_rows(dtype):
    t = aligned_rows(3, 50257, dtype, "cpu")
    assert t.shape == (3, 50257) and t.dtype == dtype and t.stride() == (50272, 1)
    assert t.stride(0) % ROW_ALIGN == 0
    assert t.data_ptr() % 16 == 0


def test_bad_width():
    with pytest.raises(ValueError):
        padded_width(-1)
