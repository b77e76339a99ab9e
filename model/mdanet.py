"""SD-MdaNet's networks: the dense-attention main branch, MTAN-style task attention, heads.

``MdaNet`` (the multitask teacher and the student) = ``MainBranch`` + one ``TaskAttention``
per task + a head per task. ``SingleTaskNet`` (the two single-task teachers) = the same main
branch + one pooled head. Diagram and rationale: docs/model.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.blocks import DenseBlock, ResidualAttention, Transition
from model.config import MdaNetConfig
from model.outputs import ModelOutput, check_input
from model.pathology import INVASIVENESS, PATTERNS

TASKS = ("invasiveness", "growth")
TASK_CLASSES = {"invasiveness": len(INVASIVENESS), "growth": len(PATTERNS)}


class MainBranch(nn.Module):
    """Stem, then per block: dense block -> residual attention (-> transition, but the last).

    ``forward`` returns the features after each block's attention module (the depths the task
    attention reads) and the attention masks.
    """

    def __init__(self, config: MdaNetConfig) -> None:
        super().__init__()
        self.config = config
        self.stem = nn.Sequential(
            nn.Conv3d(1, config.stem_channels, 3, stride=config.stem_stride, padding=1,
                      bias=False),
            nn.BatchNorm3d(config.stem_channels), nn.ReLU(inplace=True),
        )
        self.blocks = nn.ModuleList()
        self.attention = nn.ModuleList()
        self.transitions = nn.ModuleList()
        self.channels: list[int] = []
        channels = config.stem_channels
        for index, layers in enumerate(config.block_layers):
            block = DenseBlock(channels, layers, config.growth, config.bottleneck)
            self.blocks.append(block)
            self.attention.append(ResidualAttention(block.out_channels, config.attention_depth))
            self.channels.append(block.out_channels)
            channels = block.out_channels
            if index < len(config.block_layers) - 1:
                transition = Transition(channels, config.compression)
                self.transitions.append(transition)
                channels = transition.out_channels
        self.final = nn.Sequential(nn.BatchNorm3d(channels), nn.ReLU(inplace=True))
        self.out_channels = channels
        self.min_input_size = config.min_input_size()

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Features after each block's attention (the last one normalised), and the masks."""
        check_input(x, self.min_input_size)
        features: list[Tensor] = []
        masks: list[Tensor] = []
        y = self.stem(x)
        for index, (block, attention) in enumerate(zip(self.blocks, self.attention, strict=True)):
            y, mask = attention(block(y))
            masks.append(mask)
            if index < len(self.transitions):
                features.append(y)
                y = self.transitions[index](y)
        features.append(self.final(y))
        return features, masks


class TaskAttention(nn.Module):
    """One task's soft masks over the shared features at every depth (Liu et al., MTAN 2019).

    At depth j the mask ``M_j = sigmoid(g_j([F_j, a_{j-1}]))`` (two 1x1x1 convolutions with
    BN) reads the shared features F_j and the task's own features from the depth before;
    the task's features are ``a_j = M_j * F_j``. Between depths, ``f_j`` (2x average pooling,
    as the transitions pool, then a 1x1x1 convolution, BN, ReLU; pooling first is 8x cheaper)
    brings ``a_j`` to the next depth's size and channels.
    """

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        self.gates = nn.ModuleList()
        self.carry = nn.ModuleList()
        for depth, width in enumerate(channels):
            in_width = width if depth == 0 else 2 * width
            self.gates.append(nn.Sequential(
                nn.Conv3d(in_width, width, 1, bias=False), nn.BatchNorm3d(width),
                nn.ReLU(inplace=True),
                nn.Conv3d(width, width, 1, bias=False), nn.BatchNorm3d(width), nn.Sigmoid(),
            ))
            if depth < len(channels) - 1:
                self.carry.append(nn.Sequential(
                    nn.AvgPool3d(2),
                    nn.Conv3d(width, channels[depth + 1], 1, bias=False),
                    nn.BatchNorm3d(channels[depth + 1]), nn.ReLU(inplace=True),
                ))

    def forward(self, features: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """The task's pooled feature vector (N, C_last) and its masks, one per depth."""
        masks: list[Tensor] = []
        task: Tensor | None = None
        for depth, (shared, gate) in enumerate(zip(features, self.gates, strict=True)):
            mask = gate(shared if task is None else torch.cat([shared, task], dim=1))
            masks.append(mask)
            task = mask * shared
            if depth < len(self.carry):
                task = self.carry[depth](task)
        assert task is not None  # features is never empty
        return F.adaptive_avg_pool3d(task, 1).flatten(1), masks


class Embedding(nn.Module):
    """Pooled shared features -> linear -> L2-normalised vector (for the triplet term)."""

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        self.project = nn.Linear(channels, dim)

    def forward(self, features: Tensor) -> Tensor:
        return F.normalize(self.project(F.adaptive_avg_pool3d(features, 1).flatten(1)), dim=1)


def _head(channels: int, classes: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, classes))


class MdaNet(nn.Module):
    """The multitask dense-attention network (teacher A and the student)."""

    tasks: tuple[str, ...] = TASKS

    def __init__(self, config: MdaNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or MdaNetConfig()
        self.main = MainBranch(self.config)
        depths = self.main.channels[:-1] + [self.main.out_channels]
        self.task_attention = nn.ModuleDict({t: TaskAttention(depths) for t in TASKS})
        self.heads = nn.ModuleDict({
            t: _head(self.main.out_channels, TASK_CLASSES[t], self.config.dropout) for t in TASKS
        })
        self.embedding = Embedding(self.main.out_channels, self.config.embedding_dim)

    def forward(self, x: Tensor) -> ModelOutput:
        features, attention_masks = self.main(x)
        logits: dict[str, Tensor] = {}
        task_masks: list[Tensor] = []
        for task in TASKS:
            pooled, masks = self.task_attention[task](features)
            logits[task] = self.heads[task](pooled)
            task_masks += masks
        return ModelOutput(
            invasiveness=logits["invasiveness"],
            growth=logits["growth"],
            embedding=self.embedding(features[-1]),
            attention_masks=tuple(attention_masks),
            task_masks=tuple(task_masks),
        )


class SingleTaskNet(nn.Module):
    """The main branch with one pooled head: the single-task teachers B and C."""

    def __init__(self, task: str, config: MdaNetConfig | None = None) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f'Argument "task" must be one of {", ".join(TASKS)}, got {task!r}.')
        self.task = task
        self.tasks = (task,)
        self.config = config or MdaNetConfig()
        self.main = MainBranch(self.config)
        self.head = _head(self.main.out_channels, TASK_CLASSES[task], self.config.dropout)

    def forward(self, x: Tensor) -> ModelOutput:
        features, attention_masks = self.main(x)
        logits = self.head(F.adaptive_avg_pool3d(features[-1], 1).flatten(1))
        return ModelOutput(
            invasiveness=logits if self.task == "invasiveness" else None,
            growth=logits if self.task == "growth" else None,
            embedding=None,
            attention_masks=tuple(attention_masks),
        )
