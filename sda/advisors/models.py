"""What each built-in model's advisor adds to the shared knowledge: its sections and its own dimensions (the
registry, sda.models.builtin, pairs each with its model)."""

from __future__ import annotations

from sda.advisors.knowledge import DataFacts, embedding_dim_for, mlp_choices, mlp_for, shared_embedding_dim
from sda.models.registry import ModelAdvice


def _dropout() -> dict:
    return {"name": "dropout", "type": "double", "bounds": {"min": 0.0, "max": 0.3}}


def dlrm(facts: DataFacts) -> ModelAdvice:
    """Meta's layout: bottom MLP ends at the (one) embedding dim; the dim is fixed, since the bottom MLP
    would have to follow it; the top MLP scales with the data."""
    dim, widths = shared_embedding_dim(facts), mlp_for(facts.train_rows)
    return {"name": "dlrm", "embedding_dim": dim, "bottom_mlp": [widths[0], dim], "top_mlp": list(widths)}, [
        mlp_choices("top_mlp", widths), _dropout()]


def _per_table(facts: DataFacts, base: int) -> dict[str, int]:
    return {c: d for c, n in facts.vocab_sizes.items() if (d := embedding_dim_for(n, facts.train_rows)) != base}


def wide_deep(facts: DataFacts) -> ModelAdvice:
    """Per-table dims from each table's size; the deep part scales with the data."""
    base = shared_embedding_dim(facts)
    section = {"name": "wide_deep", "embedding_dim": base, "table_dims": _per_table(facts, base),
               "deep_mlp": list(mlp_for(facts.train_rows))}
    return section, [mlp_choices("deep_mlp", tuple(section["deep_mlp"])), _dropout()]


def dcnv2(facts: DataFacts) -> ModelAdvice:
    """DCN-v2 paper: 2-4 cross layers; low rank pays once the input is wide (rank about width / 4)."""
    base = shared_embedding_dim(facts)
    table_dims = _per_table(facts, base)
    width = facts.n_dense + sum(table_dims.get(c, base) for c in facts.vocab_sizes)
    section = {"name": "dcnv2", "embedding_dim": base, "table_dims": table_dims, "cross_layers": 3,
               "structure": "parallel", "deep_mlp": list(mlp_for(facts.train_rows))}
    if width > 256:
        section["low_rank"] = max(16, width // 4)
    return section, [{"name": "cross_layers", "type": "int", "bounds": {"min": 2, "max": 4}},
                     mlp_choices("deep_mlp", tuple(section["deep_mlp"])), _dropout()]


def deepfm(facts: DataFacts) -> ModelAdvice:
    """The FM part needs one dim; it is tuned around the rule-of-thumb value."""
    dim = shared_embedding_dim(facts)
    section = {"name": "deepfm", "embedding_dim": dim, "deep_mlp": list(mlp_for(facts.train_rows))}
    return section, [{"name": "embedding_dim", "type": "int", "grid": sorted({max(4, dim // 2), dim, dim * 2})},
                     mlp_choices("deep_mlp", tuple(section["deep_mlp"])), _dropout()]

