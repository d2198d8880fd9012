"""Task heads on pooled backbone features."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from fashionlab.errors import ConfigError

HEAD_TYPES = ("linear", "mlp")


def build_head(
    in_features: int,
    num_outputs: int,
    type: str = "linear",
    hidden_dims: Sequence[int] = (512,),
    dropout: float = 0.0,
) -> nn.Module:
    """`linear`: Dropout + Linear. `mlp`: (Linear, ReLU, Dropout) per hidden dim, then Linear."""
    if type == "linear":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_outputs))
    if type == "mlp":
        layers: list[nn.Module] = []
        width = in_features
        for hidden in hidden_dims:
            layers += [nn.Linear(width, int(hidden)), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = int(hidden)
        layers.append(nn.Linear(width, num_outputs))
        return nn.Sequential(*layers)
    raise ConfigError(f"model.head.type is {type!r}; expected one of {', '.join(HEAD_TYPES)}")
