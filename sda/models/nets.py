"""The four built-in CTR models. Each maps (dense [B, n_dense] float, cat [B, n_cat] int) to logits [B]."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sda.models.config import DCNv2Config, DeepFMConfig, DLRMConfig, WideDeepConfig
from sda.models.layers import FusedEmbeddings, IdWeights, mlp


class DLRM(nn.Module):
    """Meta's DLRM: bottom MLP, embeddings, pairwise dot products (lower triangle), top MLP."""

    def __init__(self, config: DLRMConfig, n_dense: int, sizes: Sequence[int], sparse: bool = False) -> None:
        super().__init__()
        self.embeddings = FusedEmbeddings(sizes, [config.embedding_dim] * len(sizes), sparse)
        self.bottom = mlp(n_dense, config.bottom_mlp)
        features = len(sizes) + 1
        rows, cols = torch.tril_indices(features, features, offset=0 if config.self_interaction else -1)
        self.register_buffer("pair_rows", rows, persistent=False)
        self.register_buffer("pair_cols", cols, persistent=False)
        self.top = mlp(config.embedding_dim + rows.numel(), config.top_mlp, config.dropout)
        self.out = nn.Linear(config.top_mlp[-1] if config.top_mlp else config.embedding_dim + rows.numel(), 1)

    def forward(self, dense: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        bottom = self.bottom(dense)
        vectors = torch.cat([bottom.unsqueeze(1), self.embeddings.stacked(cat)], dim=1)
        products = torch.bmm(vectors, vectors.transpose(1, 2))[:, self.pair_rows, self.pair_cols]
        return self.out(self.top(torch.cat([bottom, products], dim=1))).squeeze(1)


class WideDeep(nn.Module):
    def __init__(self, config: WideDeepConfig, n_dense: int, sizes: Sequence[int], dims: Sequence[int],
                 sparse: bool = False) -> None:
        super().__init__()
        self.wide_ids = IdWeights(sizes, sparse)
        self.wide_dense = nn.Linear(n_dense, 1)
        self.embeddings = FusedEmbeddings(sizes, dims, sparse)
        self.deep = mlp(n_dense + self.embeddings.output_dim, config.deep_mlp, config.dropout)
        self.out = nn.Linear(config.deep_mlp[-1], 1)

    def forward(self, dense: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        wide = self.wide_ids(cat) + self.wide_dense(dense).squeeze(1)
        deep = self.out(self.deep(torch.cat([dense, self.embeddings.flat(cat)], dim=1))).squeeze(1)
        return wide + deep


class CrossLayer(nn.Module):
    """x_{l+1} = x0 * (W x_l + b) + x_l, with W = U V^T when low rank."""

    def __init__(self, width: int, low_rank: int | None) -> None:
        super().__init__()
        if low_rank is None:
            self.project = nn.Linear(width, width)
        else:
            self.project = nn.Sequential(nn.Linear(width, low_rank, bias=False), nn.Linear(low_rank, width))

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * self.project(x) + x


class DCNv2(nn.Module):
    def __init__(self, config: DCNv2Config, n_dense: int, sizes: Sequence[int], dims: Sequence[int],
                 sparse: bool = False) -> None:
        super().__init__()
        self.embeddings = FusedEmbeddings(sizes, dims, sparse)
        width = n_dense + self.embeddings.output_dim
        self.cross = nn.ModuleList(CrossLayer(width, config.low_rank) for _ in range(config.cross_layers))
        self.structure = config.structure
        self.deep = mlp(width, config.deep_mlp, config.dropout)
        head = config.deep_mlp[-1] + (width if config.structure == "parallel" else 0)
        self.out = nn.Linear(head, 1)

    def forward(self, dense: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        x0 = torch.cat([dense, self.embeddings.flat(cat)], dim=1)
        crossed = x0
        for layer in self.cross:
            crossed = layer(x0, crossed)
        if self.structure == "stacked":
            return self.out(self.deep(crossed)).squeeze(1)
        return self.out(torch.cat([crossed, self.deep(x0)], dim=1)).squeeze(1)


class DeepFM(nn.Module):
    def __init__(self, config: DeepFMConfig, n_dense: int, sizes: Sequence[int], sparse: bool = False) -> None:
        super().__init__()
        self.first_ids = IdWeights(sizes, sparse)
        self.first_dense = nn.Linear(n_dense, 1)
        self.embeddings = FusedEmbeddings(sizes, [config.embedding_dim] * len(sizes), sparse)
        self.deep = mlp(n_dense + len(sizes) * config.embedding_dim, config.deep_mlp, config.dropout)
        self.out = nn.Linear(config.deep_mlp[-1], 1)

    def forward(self, dense: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        vectors = self.embeddings.stacked(cat)
        first = self.first_ids(cat) + self.first_dense(dense).squeeze(1)
        fm = 0.5 * (vectors.sum(dim=1).pow(2) - vectors.pow(2).sum(dim=1)).sum(dim=1)
        deep = self.out(self.deep(torch.cat([dense, vectors.flatten(1)], dim=1))).squeeze(1)
        return first + fm + deep
