"""``create_model(name, **cfg)``: the one way to build a network by name.

The names are what checkpoints record, so a checkpoint rebuilds exactly its network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from model.baseline import PlainCnn
from model.config import MdaNetConfig, PlainCnnConfig
from model.mdanet import MdaNet, SingleTaskNet

#: name -> builder taking the keyword hyper-parameters; the roles are described in docs/model.md
_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    # the multitask dense-attention network: teacher A and the student
    "mdanet": lambda **cfg: MdaNet(MdaNetConfig.from_kwargs(**cfg)),
    # the main branch with the invasiveness head alone: teacher B
    "mdanet_invasiveness": lambda **cfg: SingleTaskNet(
        "invasiveness", MdaNetConfig.from_kwargs(**cfg)),
    # the main branch with the growth head alone: teacher C
    "mdanet_growth": lambda **cfg: SingleTaskNet("growth", MdaNetConfig.from_kwargs(**cfg)),
    # the plain 3D CNN for the ablation
    "plain_cnn": lambda **cfg: PlainCnn(PlainCnnConfig.from_kwargs(**cfg)),
}

MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def create_model(name: str, **cfg: Any) -> nn.Module:
    """Build the network ``name`` with hyper-parameters ``cfg`` (defaults for the rest).

    Raises ``ValueError`` for an unknown name (listing the known ones) or a bad or unknown
    hyper-parameter (naming it).
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")
    return _BUILDERS[name](**cfg)


def model_config(model: nn.Module) -> dict[str, Any]:
    """The hyper-parameters of a network built here, as plain values for a checkpoint."""
    config = getattr(model, "config", None)
    if not isinstance(config, MdaNetConfig | PlainCnnConfig):
        raise TypeError(f"{type(model).__name__} was not built by create_model")
    return config.to_dict()
