from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from model.config import MdaNetConfig
from model.factory import MODEL_NAMES, create_model, model_config
from model.losses import growth_loss, invasiveness_loss
from model.outputs import ModelOutput
from tests.model.conftest import TINY, TINY_PLAIN


def _config(name: str) -> dict[str, Any]:
    return TINY_PLAIN if name == "plain_cnn" else TINY


def _logits(out: ModelOutput) -> list[torch.Tensor]:
    return [t for t in (out.invasiveness, out.growth) if t is not None]


@pytest.mark.parametrize(
    ("name", "cfg", "size", "batch", "inv", "growth"),
    [
        ("mdanet", TINY, 16, 1, (1, 3), (1, 7)),
        ("mdanet", TINY, 17, 3, (3, 3), (3, 7)),
        ("mdanet", {**TINY, "block_layers": (1, 1, 1)}, 24, 2, (2, 3), (2, 7)),
        ("mdanet", {**TINY, "stem_stride": 1, "attention_depth": 2}, 12, 2, (2, 3), (2, 7)),
        ("mdanet_invasiveness", TINY, 20, 2, (2, 3), None),
        ("mdanet_growth", TINY, 16, 2, None, (2, 7)),
        ("plain_cnn", TINY_PLAIN, 16, 4, (4, 3), (4, 7)),
        ("plain_cnn", TINY_PLAIN, 21, 1, (1, 3), (1, 7)),
    ],
)
def test_output_shapes(name: str, cfg: dict[str, Any], size: int, batch: int,
                       inv: tuple[int, int] | None, growth: tuple[int, int] | None) -> None:
    model = create_model(name, **cfg).eval()
    with torch.no_grad():
        out = model(torch.rand(batch, 1, size, size, size))
    assert (None if out.invasiveness is None else tuple(out.invasiveness.shape)) == inv
    assert (None if out.growth is None else tuple(out.growth.shape)) == growth
    for tensor in [*_logits(out), *out.attention_masks, *out.task_masks]:
        assert torch.isfinite(tensor).all()


def test_mdanet_masks_are_in_unit_interval_at_every_depth() -> None:
    model = create_model("mdanet", **{**TINY, "block_layers": (1, 1, 1)})
    with torch.no_grad():
        out = model(torch.rand(2, 1, 24, 24, 24))
    assert len(out.attention_masks) == 3  # one residual attention module per block
    assert len(out.task_masks) == 6  # two tasks x three depths
    for mask in out.attention_masks + out.task_masks:
        assert float(mask.min()) >= 0 and float(mask.max()) <= 1
    assert out.embedding is not None
    assert torch.allclose(out.embedding.norm(dim=1), torch.ones(2))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_parameter_gets_a_gradient(name: str) -> None:
    model = create_model(name, **_config(name)).train()
    out = model(torch.rand(3, 1, 16, 16, 16))
    loss = sum(t.square().mean() for t in _logits(out))
    if out.embedding is not None:
        loss = loss + out.embedding[:, 0].sum()
    loss.backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name
        assert float(param.grad.abs().sum()) > 0, param_name


def test_default_config_is_the_lean_net() -> None:
    model = create_model("mdanet")
    assert model.config == MdaNetConfig()
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    assert model_config(model)["block_layers"] == [3, 4, 4]


def test_unknown_model_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known models: mdanet, mdanet_invasiveness"):
        create_model("resnet50")


@pytest.mark.parametrize(
    ("name", "cfg", "argument"),
    [
        ("mdanet", {"growth": 0}, "growth"),
        ("mdanet", {"stem_stride": 3}, "stem_stride"),
        ("mdanet", {"block_layers": ()}, "block_layers"),
        ("mdanet", {"block_layers": (2, 0)}, "block_layers"),
        ("mdanet", {"compression": 0}, "compression"),
        ("mdanet", {"dropout": 1.0}, "dropout"),
        ("mdanet", {"attention_depth": 4}, "attention_depth"),
        ("mdanet", {"growht": 8}, "unknown hyper-parameter"),
        ("mdanet_growth", {"bottleneck": 1.5}, "bottleneck"),
        ("plain_cnn", {"widths": (8, -1)}, "widths"),
        ("plain_cnn", {"growth": 8}, "unknown hyper-parameter"),
    ],
)
def test_bad_hyper_parameters_are_refused(name: str, cfg: dict[str, Any], argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        create_model(name, **cfg)


@pytest.mark.parametrize(
    ("shape", "message"),
    [((2, 16, 16, 16), r"\(N, 1, D, H, W\)"), ((2, 2, 16, 16, 16), r"\(N, 1, D, H, W\)"),
     ((2, 1, 16, 16, 6), ">= 7 voxels")],
)
def test_bad_input_is_refused_with_a_clear_error(shape: tuple[int, ...], message: str) -> None:
    model = create_model("mdanet", **TINY)
    assert MdaNetConfig.from_kwargs(**TINY).min_input_size() == 7
    with pytest.raises(ValueError, match=message):
        model(torch.rand(*shape))


class _Flat(torch.nn.Module):
    """The network with its outputs flattened to a tuple, as an exported program stores them."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(x)
        return (out.invasiveness, out.growth, out.embedding, *out.attention_masks,
                *out.task_masks)


def test_export_round_trip_gives_the_same_outputs(tmp_path: Path) -> None:
    model = _Flat(create_model("mdanet", **TINY)).eval()
    x = torch.rand(2, 1, 16, 16, 16)
    with torch.no_grad():
        expected = model(x)
    torch.export.save(torch.export.export(model, (x,)), tmp_path / "mdanet.pt2")
    loaded = torch.export.load(tmp_path / "mdanet.pt2").module()
    with torch.no_grad():
        got = loaded(x)
    assert len(got) == len(expected) == 3 + 2 + 4
    for a, b in zip(expected, got, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.slow
def test_a_small_model_overfits_16_samples() -> None:
    """Both task losses go near 0 on 16 random crops with random labels (memorisation),
    measured in eval mode, i.e. with the running BN statistics the Predictor uses."""
    model = create_model("mdanet", **{**TINY, "stem_channels": 8, "growth": 8})
    x = torch.rand(16, 1, 12, 12, 12)
    classes = torch.arange(16) % 3
    fractions = torch.nn.functional.one_hot(torch.arange(16) % 7, 7).float()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(100):
        optimizer.zero_grad()
        out = model(x)
        assert out.invasiveness is not None and out.growth is not None
        loss = invasiveness_loss(out.invasiveness, classes) + growth_loss(out.growth, fractions)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.invasiveness is not None and out.growth is not None
    assert float(invasiveness_loss(out.invasiveness, classes)) < 0.05
    assert float(growth_loss(out.growth, fractions)) < 0.05
