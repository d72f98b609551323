"""Carry a trained model's weights into the same model built for a larger vocabulary (a refresh).

Ids are append-only (recdp.vocab), so a newer vocabulary keeps every old id and adds new ones after it. Each
table's old rows are copied to their place in the larger fused table; the new ids keep the new model's own
initialisation. Every other weight (MLPs, cross layers) does not depend on the vocabulary and is copied as is.
"""

from __future__ import annotations

import torch
from torch import nn

from sda.models.io import DataShape
from sda.models.layers import FusedEmbeddings, IdWeights


def grow_into(old: nn.Module, old_shape: DataShape, new: nn.Module, new_shape: DataShape) -> None:
    """Copy `old`'s weights into `new` (the same architecture, built for `new_shape`)."""
    if (old_shape.dense_columns, old_shape.categorical_columns) != (new_shape.dense_columns,
                                                                     new_shape.categorical_columns):
        raise ValueError("a refresh needs the same columns: the model was trained on "
                         f"{old_shape.categorical_columns}, the window has {new_shape.categorical_columns}")
    shrunk = [c for c, o, n in zip(new_shape.categorical_columns, old_shape.table_sizes, new_shape.table_sizes,
                                   strict=True) if n < o]
    if shrunk:
        raise ValueError(f"the window's vocabulary is smaller than the model's for {shrunk}: ids only grow")
    grown: set[str] = set()
    old_modules = dict(old.named_modules())
    with torch.no_grad():
        for name, module in new.named_modules():
            source = old_modules.get(name)
            if isinstance(module, FusedEmbeddings) and isinstance(source, FusedEmbeddings):
                for column, rows in enumerate(source.sizes):
                    (old_table, old_start), (new_table, new_start) = source.location(column), module.location(column)
                    module.tables[new_table].weight[new_start:new_start + rows] = \
                        source.tables[old_table].weight[old_start:old_start + rows]
                grown |= {f"{name}.{p}" for p, _ in module.named_parameters()}
            elif isinstance(module, IdWeights) and isinstance(source, IdWeights):
                for column, rows in enumerate(old_shape.table_sizes):
                    old_start, new_start = int(source.offsets[column]), int(module.offsets[column])
                    module.weight.weight[new_start:new_start + rows] = source.weight.weight[old_start:old_start + rows]
                grown |= {f"{name}.{p}" for p, _ in module.named_parameters()}
        rest = {k: v for k, v in old.state_dict().items() if k not in grown}
        missing, unexpected = new.load_state_dict(rest, strict=False)
        left = sorted(set(missing) - grown)
        if left or unexpected:
            raise ValueError(f"the models differ beyond their tables: missing {left}, unexpected {unexpected}")
