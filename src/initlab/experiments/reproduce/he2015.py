"""He et al. 2015, sec. 2.2 / Fig. 3: a 30-layer ReLU network does not train from Xavier's
init and trains from He's.

Xavier's variance ``1/n`` halves a ReLU layer's second moment (ReLU zeroes half of it), so after
30 layers the signal is ``2^-30`` of its size and so are the gradients; He's ``2/n`` keeps it.
Ours: a 30-hidden-layer ReLU MLP on Fashion-MNIST (the paper: a 30-layer conv net on ImageNet),
trained by :func:`initlab.experiments.run_training` from ``xavier_normal`` and ``he_normal``.

Records (experiment ``"he2015"``, extra ``source="ours"``, ``part="training"``): those of
:func:`~initlab.experiments.run_training` (``test_accuracy_at_step``, ``train_loss`` per epoch,
``final_test_accuracy``, ``steps_to_target``, ...) with the extra ``dataset``; the paper's
findings (``stat="finding"``, ``source="paper"``, text in ``text``) and a ``verdict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from initlab.experiments.common import plural
from initlab.experiments.reproduce.common import (
    PARTLY,
    Reproduction,
    ReproductionConfig,
    dataset,
    paper_record,
    retag,
    seed_stats,
    seeds_of,
    seeds_text,
    subset,
    train_records,
    verdict_record,
)

__all__ = ["He2015Config", "He2015Cell", "cells", "run_cell", "conclude", "describe", "REPRODUCTION"]

NAME = "he2015"
SCHEMES = ("xavier_normal", "he_normal")


@dataclass(frozen=True)
class He2015Config(ReproductionConfig):
    """Configuration of the He et al. 2015 reproduction (the full run; :meth:`quick` for tests, a
    few seconds on one thread: the same 30 layers, narrower, one epoch on 600 examples, one seed).

    Attributes:
        dataset, data_dir: the data (default Fashion-MNIST from its system directory).
        n_train: training examples (a stratified subset drawn with ``seed``).
        n_test: test examples scored (the first ones of the official test set).
        depth, width: hidden ReLU layers and their units (the paper: 30 layers).
        epochs, batch_size, lr, momentum: SGD with momentum on the cross-entropy.
        target_accuracy: the test accuracy ``steps_to_target`` counts the SGD steps to.
        evals_per_epoch: test evaluations per epoch (the resolution of ``steps_to_target``).
        seed: data split and first training seed; ``seeds``: training seeds ``seed, seed+1, ...``.
    """

    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    n_train: int = 10_000
    n_test: int = 2_000
    depth: int = 30
    width: int = 128
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    momentum: float = 0.9
    target_accuracy: float = 0.75
    evals_per_epoch: int = 4
    seed: int = 0
    seeds: int = 3

    COUNTS = ("n_train", "n_test", "depth", "width", "epochs", "batch_size", "evals_per_epoch", "seeds")
    POSITIVE = ("lr", "target_accuracy")
    QUICK = {"n_train": 600, "n_test": 300, "width": 32, "epochs": 1, "evals_per_epoch": 2, "seeds": 1}


@dataclass(frozen=True)
class He2015Cell:
    """One training run: ``config`` with one scheme and one training seed."""

    config: He2015Config
    scheme: str
    seed: int


def cells(config: He2015Config) -> list[He2015Cell]:
    """Every (scheme, seed) run of ``config``, Xavier first."""
    return [He2015Cell(config, scheme, seed) for scheme in SCHEMES for seed in seeds_of(config)]


def run_cell(cell: He2015Cell) -> list[dict[str, Any]]:
    """Train one 30-layer ReLU MLP (:func:`initlab.experiments.run_training`) and return its records
    under experiment ``"he2015"``.

    Raises:
        DataError: the data set cannot be loaded.
    """
    c = cell.config
    ds = subset(dataset(c.dataset, c.data_dir, c.seed, c.n_train), c.n_test)
    records = train_records(c, ds, cell.scheme, "relu", cell.seed, target_accuracy=c.target_accuracy,
                            evals_per_epoch=c.evals_per_epoch)
    return retag(records, NAME, dataset=ds.name)


def _per_seed(records: list[dict[str, Any]], scheme: str, stat: str) -> list[Any]:
    return [r["value"] for r in records if r["scheme"] == scheme and r["stat"] == stat
            and r.get("source") == "ours"]


def conclude(config: He2015Config, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The paper's findings and the verdict on "He trains, Xavier stalls", from ``records``.

    The claim holds when He reaches ``target_accuracy`` in at least half the seeds and Xavier in
    fewer than half, and Xavier "stalls" as in the paper: its median final accuracy stays within
    5 points of chance (``1 / n_classes``). When Xavier learns, slowly, instead, the verdict is
    "partly agrees" (:data:`~initlab.experiments.reproduce.common.PARTLY`). A run whose loss
    diverged (final accuracy ``nan``) counts as chance.

    Raises:
        DataError: the data set (its number of classes) cannot be loaded.
    """
    out = [paper_record(NAME, "xavier_normal", "relu", "finding", None, where="Fig. 3 (right), sec. 2.2",
                        text="stalls: the 30-layer net's error does not go down (its gradients diminish)"),
           paper_record(NAME, "he_normal", "relu", "finding", None, where="Fig. 3 (right), sec. 2.2",
                        text="converges")]
    n = int(config.seeds)
    reached = {s: [v for v in _per_seed(records, s, "steps_to_target") if v is not None] for s in SCHEMES}
    chance = 1.0 / int(dataset(config.dataset, config.data_dir, config.seed, config.n_train).n_classes)
    final = {s: seed_stats(_per_seed(records, s, "final_test_accuracy"), diverged=chance) for s in SCHEMES}
    target = f"{config.target_accuracy:.0%}"
    he_ok = 2 * len(reached["he_normal"]) >= n
    xavier_ok = 2 * len(reached["xavier_normal"]) >= n
    he_steps = seed_stats(reached["he_normal"])
    every = "its one seed" if n == 1 else f"any of {n} seeds"
    he_text = (f"He reached {target} test accuracy in {len(reached['he_normal'])} of {plural(n, 'seed')} "
               f"(median {he_steps[0]:.0f} SGD steps)" if reached["he_normal"] else
               f"He did not reach {target} test accuracy in {every}")
    x_text = f"Xavier in {len(reached['xavier_normal'])} of {n}"
    finals = (f"final test accuracy: Xavier {final['xavier_normal'][0]:.1%}, He {final['he_normal'][0]:.1%} "
              "(medians)")
    agrees: bool | float | None
    if he_ok and not xavier_ok:
        if final["xavier_normal"][0] <= chance + 0.05:
            agrees, text = True, (f"agrees: {he_text}; {x_text}; {finals}. Xavier stays near chance "
                                  f"({chance:.0%}): it stalls, as in the paper's Fig. 3.")
        else:
            slow = f"{final['xavier_normal'][0]:.1%} against {chance:.0%} chance"
            agrees, text = PARTLY, (f"partly agrees: {he_text}; {x_text}; {finals}. He trains and Xavier "
                                    "falls far behind, but Xavier does not stall as in the paper's Fig. 3: "
                                    f"it learns, slowly ({slow}).")
    elif not he_ok:
        text = (f"does not agree: {he_text} within {plural(config.epochs, 'epoch')}, so this run cannot show "
                f"He training where Xavier does not; {finals}.")
        agrees = False
    else:
        text = (f"does not agree: {he_text}, and {x_text} seeds reached it too: Xavier did not stall; "
                f"{finals}.")
        agrees = False
    out.append(verdict_record(NAME, "a 30-layer ReLU net trains from He's init and stalls from Xavier's",
                              agrees, text))
    return out


def describe(config: He2015Config) -> dict[str, str]:
    """The section's texts for ``config`` (:attr:`Reproduction.describe`)."""
    c = config
    return {
        "citation": "K. He, X. Zhang, S. Ren, J. Sun, \"Delving deep into rectifiers: surpassing human-level "
                    "performance on ImageNet classification\", ICCV 2015 (sec. 2.2, Fig. 3).",
        "claim": "A 30-layer plain ReLU network does not learn from Xavier's init (variance 1/n: each ReLU "
                 "layer halves the signal's second moment, 2^-30 after 30 layers) and learns from He's "
                 "(variance 2/fan_in, which keeps it).",
        "paper_setup": "30 convolutional layers with ReLU, ImageNet (1.28 M images, 1,000 classes), SGD; "
                       "Fig. 3 (right) plots the top-1 error over epochs: Xavier's curve does not go down, "
                       "He's does.",
        "our_setup": f"A {c.depth}-hidden-layer ReLU MLP of width {c.width} on {c.n_train:,} {c.dataset} "
                     f"training images (a stratified subset), test accuracy on the first {c.n_test:,} test "
                     f"images, {c.evals_per_epoch} times per epoch; SGD lr {c.lr:g}, "
                     f"momentum {c.momentum:g}, batch {c.batch_size}, {plural(c.epochs, 'epoch')}; "
                     f"{seeds_text(c)}. Xavier normal: std sqrt(2/(fan_in+fan_out)) = sqrt(1/n) for square "
                     "layers; He normal: std sqrt(2/fan_in); biases 0; the output layer gain 1.",
        "scale": f"An MLP instead of a conv net; {c.n_train:,} training images instead of 1.28 M (about "
                 f"{1_281_167 / c.n_train:.0f}x fewer), 10 classes instead of 1,000, width {c.width}, "
                 f"{plural(c.epochs, 'epoch')}.",
    }


REPRODUCTION = Reproduction(
    name=NAME,
    title="He et al. 2015: a 30-layer ReLU net — Xavier stalls, He trains",
    summary="He et al. 2015, sec. 2.2 / Fig. 3: 30-layer ReLU MLP on Fashion-MNIST, Xavier vs He",
    config=He2015Config,
    cells=cells,
    run_cell=run_cell,
    conclude=conclude,
    describe=describe,
)
