"""Hyper-parameters of the networks, checked before anything is built.

A config is a frozen dataclass of plain values, so a checkpoint can store it as a dict and
``create_model(name, **config)`` can rebuild the same network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

_C = TypeVar("_C", bound="_Config")


class _Config:
    """Shared plumbing: building from keyword arguments and back to plain values."""

    @classmethod
    def from_kwargs(cls: type[_C], **kwargs: Any) -> _C:
        """Build from keyword arguments; an unknown key raises ``ValueError`` naming the
        known ones. Lists become tuples (checkpoints store tuples as lists)."""
        known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(kwargs) - set(known))
        if unknown:
            raise ValueError(
                f"unknown hyper-parameter(s) {', '.join(unknown)} for {cls.__name__}; "
                f"known: {', '.join(known)}"
            )
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (tuples as lists) for a checkpoint."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in asdict(self).items()}  # type: ignore[call-overload]


def _check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (
        high is not None and value > high
    ):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f'Argument "{name}" must be an integer {bound}, got {value!r}.')


def _check_fraction(name: str, value: object, *, zero_ok: bool) -> None:
    ok = isinstance(value, int | float) and (0 <= value < 1 if zero_ok else 0 < value <= 1)
    if not ok:
        interval = "[0, 1)" if zero_ok else "(0, 1]"
        raise ValueError(f'Argument "{name}" must lie in {interval}, got {value!r}.')


@dataclass(frozen=True)
class MdaNetConfig(_Config):
    """The dense-attention network: a stem, dense blocks each followed by a residual
    attention module (and a transition between blocks), task attention, heads.

    The default is the lean net of docs/model.md: 0.5 M parameters, fast enough to train
    teachers and student on a CPU.

    Attributes:
        stem_channels: channels of the stem convolution (3x3x3).
        stem_stride: 1 or 2; 2 halves the resolution before the first block (4-8x cheaper).
        block_layers: dense layers per block; the number of blocks is its length.
        growth: channels each dense layer adds.
        bottleneck: the 1x1x1 bottleneck has ``bottleneck * growth`` channels.
        compression: a transition keeps this fraction of the channels.
        attention_depth: pooling levels of each soft-mask branch.
        embedding_dim: size of the L2-normalised embedding (for the triplet term).
        dropout: dropout before each head.
    """

    stem_channels: int = 16
    stem_stride: int = 2
    block_layers: tuple[int, ...] = (3, 4, 4)
    growth: int = 8
    bottleneck: int = 4
    compression: float = 0.5
    attention_depth: int = 1
    embedding_dim: int = 32
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _check_int("stem_channels", self.stem_channels, 1)
        _check_int("stem_stride", self.stem_stride, 1, 2)
        if not isinstance(self.block_layers, tuple) or not 1 <= len(self.block_layers) <= 5:
            raise ValueError(
                f'Argument "block_layers" must be a tuple of 1 to 5 integers, '
                f"got {self.block_layers!r}."
            )
        for layers in self.block_layers:
            _check_int("block_layers", layers, 1)
        _check_int("growth", self.growth, 1)
        _check_int("bottleneck", self.bottleneck, 1)
        _check_fraction("compression", self.compression, zero_ok=False)
        _check_int("attention_depth", self.attention_depth, 1, 3)
        _check_int("embedding_dim", self.embedding_dim, 1)
        _check_fraction("dropout", self.dropout, zero_ok=True)

    def min_input_size(self) -> int:
        """The smallest crop edge whose last block still fits its attention's pooling."""
        size = 1
        while self.last_block_size(size) < 2**self.attention_depth:
            size += 1
        return size

    def last_block_size(self, input_size: int) -> int:
        """Edge of the feature maps of the last block for a crop of ``input_size``."""
        size = (input_size - 1) // self.stem_stride + 1
        for _ in self.block_layers[1:]:
            size //= 2
        return size


@dataclass(frozen=True)
class PlainCnnConfig(_Config):
    """The ablation baseline: plain 3D convolutions, no dense connections, no attention.

    Attributes:
        stem_stride: 1 or 2, as in ``MdaNetConfig``.
        widths: channels of each stage (two 3x3x3 convolutions each, 2x max-pooling between).
        embedding_dim: size of the L2-normalised embedding.
        dropout: dropout before each head.
    """

    stem_stride: int = 2
    widths: tuple[int, ...] = (16, 32, 48)
    embedding_dim: int = 32
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _check_int("stem_stride", self.stem_stride, 1, 2)
        if not isinstance(self.widths, tuple) or not 1 <= len(self.widths) <= 5:
            raise ValueError(
                f'Argument "widths" must be a tuple of 1 to 5 integers, got {self.widths!r}.'
            )
        for width in self.widths:
            _check_int("widths", width, 1)
        _check_int("embedding_dim", self.embedding_dim, 1)
        _check_fraction("dropout", self.dropout, zero_ok=True)

    def min_input_size(self) -> int:
        """The smallest crop edge that survives the stem and every pooling."""
        return self.stem_stride * 2 ** (len(self.widths) - 1)
