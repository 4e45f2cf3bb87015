"""Per-layer statistics of a model at initialization: the ``probe`` cell of ``initlab sweep``.

:func:`run_probe_cell` builds a model of a family (:mod:`initlab.experiments.families`) after
``torch.manual_seed(seed)``, initializes it (:mod:`initlab.experiments.starts`) and runs
:func:`initlab.probe` on one seeded batch of standard-normal inputs (token ids for ``gpt``): the
activation and gradient statistics of every layer, with the propagated prediction beside them.
Records: :func:`initlab.probe`'s, without the histogram counts, tagged with experiment
``"probe"``, scheme = the start, activation = the network's hidden activation (the layer's own, as
the probe found it, moves to ``layer_activation``), the seed and ``model, depth, width``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from initlab.experiments.common import check_ints, torch_threads
from initlab.experiments.families import ModelArgs, build_model, check_model, image_side, input_kind
from initlab.experiments.starts import StartContext, apply_start, check_start

__all__ = ["ProbeCellConfig", "run_probe_cell"]

EXPERIMENT = "probe"


@dataclass(frozen=True)
class ProbeCellConfig:
    """Configuration of :func:`run_probe_cell`.

    Attributes:
        model, init, depth, width, activation, norm: as :class:`initlab.experiments.train.TrainConfig`.
        batch: examples in the probed batch.
        n_features: input features of an ``mlp`` or a factory; ``cnn`` / ``resnet`` take square
            one-channel images of that many pixels (784: 28x28).
        n_classes: outputs of the classifier families.
        context: tokens per sequence of a ``gpt``.
        seed, threads: as in the training experiment.
    """

    model: str = "mlp"
    init: str = "auto"
    depth: int = 10
    width: int = 128
    activation: str = "relu"
    norm: bool | None = None
    batch: int = 64
    n_features: int = 784
    n_classes: int = 10
    context: int = 128
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        check_model(self.model)
        check_start(self.init)
        check_ints(self, ("depth", "width", "batch", "n_features", "n_classes", "context"))
        check_ints(self, ("seed", "threads"), 0)


def _inputs(config: ProbeCellConfig, kind: str, gen: torch.Generator) -> torch.Tensor:
    if kind == "tokens":
        return torch.randint(0, 256, (config.batch, config.context), generator=gen)
    if kind == "images":
        side = image_side(config.n_features)
        return torch.randn(config.batch, 1, side, side, generator=gen)
    return torch.randn(config.batch, config.n_features, generator=gen)


def run_probe_cell(config: ProbeCellConfig | None = None) -> list[dict[str, Any]]:
    """Probe one freshly initialized model (module docstring); return its tidy records.

    Raises:
        InitlabError: a model or start that does not fit.

    >>> recs = run_probe_cell(ProbeCellConfig(depth=2, width=8, n_features=16, init="he_normal"))
    >>> {r["experiment"] for r in recs}, "std" in {r["stat"] for r in recs}
    ({'probe'}, True)
    """
    from initlab.probe import probe

    config = config or ProbeCellConfig()
    kind = input_kind(config.model, "stdlib" if config.model == "gpt" else "")
    with torch_threads(config.threads):
        torch.set_flush_denormal(True)
        torch.manual_seed(config.seed)
        args = ModelArgs(config.depth, config.width, config.activation, config.norm, config.n_features,
                         config.n_classes, config.context)
        model = build_model(config.model, args)
        gen = torch.Generator().manual_seed(config.seed)
        x = _inputs(config, kind, gen)
        apply_start(config.init, StartContext(model, gen, config.activation, None if kind == "tokens" else x))
        result = probe(model, x, generator=gen)
    tags = {"experiment": EXPERIMENT, "scheme": config.init, "activation": config.activation,
            "seed": config.seed, "epoch": None, "model": config.model, "depth": config.depth,
            "width": config.width}
    return [{**r, "layer_activation": r.get("activation"), **tags} for r in result.records
            if r.get("stat") != "count"]
