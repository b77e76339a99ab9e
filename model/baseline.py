"""The ablation baseline: a plain multitask 3D CNN, no dense connections, no attention.

It answers "what do the dense-attention and task-attention modules buy?": the same heads and
losses on a VGG-style stack of comparable size.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from model.config import PlainCnnConfig
from model.mdanet import TASK_CLASSES, TASKS, Embedding
from model.outputs import ModelOutput, check_input


def _conv(in_channels: int, out_channels: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True),
    ]


class PlainCnn(nn.Module):
    """Per stage two 3x3x3 conv-BN-ReLU (the first of the first stage strided by
    ``stem_stride``), 2x max pooling between stages, shared pooled features, two heads."""

    tasks: tuple[str, ...] = TASKS

    def __init__(self, config: PlainCnnConfig | None = None) -> None:
        super().__init__()
        self.config = config or PlainCnnConfig()
        layers: list[nn.Module] = []
        channels = 1
        for index, width in enumerate(self.config.widths):
            if index:
                layers.append(nn.MaxPool3d(2))
            layers += _conv(channels, width, self.config.stem_stride if index == 0 else 1)
            layers += _conv(width, width)
            channels = width
        self.features = nn.Sequential(*layers)
        self.heads = nn.ModuleDict({
            t: nn.Sequential(nn.Dropout(self.config.dropout), nn.Linear(channels, n))
            for t, n in TASK_CLASSES.items()
        })
        self.embedding = Embedding(channels, self.config.embedding_dim)

    def forward(self, x: Tensor) -> ModelOutput:
        check_input(x, self.config.min_input_size())
        features = self.features(x)
        pooled = F.adaptive_avg_pool3d(features, 1).flatten(1)
        return ModelOutput(
            invasiveness=self.heads["invasiveness"](pooled),
            growth=self.heads["growth"](pooled),
            embedding=self.embedding(features),
        )
