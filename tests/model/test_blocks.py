from __future__ import annotations

import pytest
import torch

from model.blocks import DenseBlock, ResidualAttention, SoftMaskBranch, Transition


def test_dense_block_concatenates_growth_channels() -> None:
    block = DenseBlock(in_channels=6, layers=3, growth=4, bottleneck=2)
    x = torch.randn(2, 6, 5, 5, 5)
    y = block(x)
    assert block.out_channels == 18 and y.shape == (2, 18, 5, 5, 5)
    assert torch.equal(y[:, :6], x)  # the input passes through unchanged


def test_transition_compresses_and_halves() -> None:
    transition = Transition(in_channels=18, compression=0.5)
    assert transition(torch.randn(2, 18, 8, 8, 7)).shape == (2, 9, 4, 4, 3)


@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("size", [4, 7, 9])
def test_residual_attention_mask_and_output(depth: int, size: int) -> None:
    if size < 2**depth:
        pytest.skip("too small for this depth")
    module = ResidualAttention(channels=8, depth=depth).eval()
    x = torch.randn(3, 8, size, size, size)
    with torch.no_grad():
        out, mask = module(x)
        trunk = module.trunk(x)
    assert out.shape == mask.shape == x.shape
    assert float(mask.min()) >= 0 and float(mask.max()) <= 1
    assert torch.allclose(out, (1 + mask) * trunk)


def test_soft_mask_branch_of_depth_two_uses_its_skip_connections() -> None:
    branch = SoftMaskBranch(channels=4, depth=2)
    assert len(branch.skips) == 1 and len(branch.up) == 1
    assert branch(torch.randn(1, 4, 8, 8, 8)).shape == (1, 4, 8, 8, 8)


@pytest.mark.parametrize(
    ("factory", "argument"),
    [
        (lambda: DenseBlock(4, 0, 4, 2), "layers"),
        (lambda: DenseBlock(4, 2, 0, 2), "growth"),
        (lambda: Transition(8, 0.0), "compression"),
        (lambda: Transition(8, 1.5), "compression"),
        (lambda: ResidualAttention(8, depth=0), "depth"),
        (lambda: ResidualAttention(0), "channels"),
    ],
)
def test_bad_hyper_parameters_are_refused_at_construction(factory, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        factory()
