"""Bengio et al. 2007 / Hinton & Salakhutdinov 2006: greedy layer-wise pretraining (RBM or
autoencoder) against none, for a deep sigmoid and tanh MLP trained on 1,000 labelled digits.

Each net is built by :func:`initlab.models.mlp`, started from the standard init
``U[-1/sqrt(fan_in), 1/sqrt(fan_in)]`` (initlab's ``torch_default``) or Xavier normal, and, for the
pretrained arms, its hidden layers are then trained bottom-up without labels by
:func:`initlab.pretrain_layerwise` (``"rbm"``: CD-1; ``"autoencoder"``) on the same 1,000
images before supervised fine-tuning of the whole net. Inputs are pixels in [0, 1], as in the
papers (an RBM's visible units are then Bernoulli).

The fine-tuning is :func:`initlab.experiments.training.fit`, the training experiment's loop.

Records (experiment ``"bengio2007"``, extras ``source``, ``arm``, ``dataset``): the fine-tuning's
records (``part="training"``: ``test_accuracy`` per epoch, ``train_loss``, ``diverged``, ...),
``test_error_pct_at_epoch`` (epoch 0 = before fine-tuning), ``test_error_pct`` (after the last
epoch; extra ``n_test``), ``pretrain_seconds``, the pretraining's
``reconstruction_loss`` per layer and epoch (``part="pretrain"``), the papers' numbers
(``source="paper"``) and a ``verdict`` per claim.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from initlab.experiments.common import derive_seed, init_mlp_, make_record, plural
from initlab.experiments.reproduce.common import (
    PARTLY,
    Reproduction,
    ReproductionConfig,
    chance_error_pct,
    dataset,
    error_se_pct,
    paper_record,
    retag,
    seed_stats,
    seeds_of,
    seeds_text,
    verdict_record,
)

__all__ = ["Bengio2007Config", "Bengio2007Cell", "cells", "run_cell", "conclude", "describe", "ARMS",
           "REPRODUCTION"]

NAME = "bengio2007"
ACTIVATIONS = ("sigmoid", "tanh")
#: scheme of the record -> (label, start init, pretraining method or None).
ARMS: dict[str, tuple[str, str, str | None]] = {
    "torch_default": ("none (standard init)", "torch_default", None),
    "xavier_normal": ("none (Xavier normal)", "xavier_normal", None),
    "pretrain_autoencoder": ("autoencoder pretraining", "torch_default", "autoencoder"),
    "pretrain_rbm": ("RBM pretraining", "torch_default", "rbm"),
}
#: The papers' MNIST test errors (%): scheme -> [(value, where)].
PAPER_NUMBERS: dict[str, list[tuple[float, str]]] = {
    "torch_default": [(2.40, "Bengio et al. 2007, Table 1: deep net, no pre-training"),
                      (1.6, "Hinton & Salakhutdinov 2006: randomly initialized backprop (best reported)")],
    "pretrain_autoencoder": [(1.40, "Bengio et al. 2007, Table 1: deep net, auto-associator pre-training")],
    "pretrain_rbm": [(1.20, "Bengio et al. 2007, Table 1: DBN (RBM pre-training)"),
                     (1.2, "Hinton & Salakhutdinov 2006: RBM-pretrained 784-500-500-2000-10 net")],
}


@dataclass(frozen=True)
class Bengio2007Config(ReproductionConfig):
    """Configuration of the layer-wise pretraining reproduction (full run; :meth:`quick` for tests:
    200 labelled digits, width 32, one pretraining epoch, two epochs).

    Attributes:
        dataset, data_dir: the digits (mnist5k: 4,000 training / 1,000 test digits).
        n_labelled: labelled training digits (a stratified subset drawn with ``seed``); the
            pretraining sees the same images, without labels.
        depth, width: hidden layers and units of the MLP.
        pretrain_epochs, pretrain_batch: epochs per layer and batch of the layer-wise pretraining
            (:func:`initlab.pretrain_layerwise` with its default learning rates).
        epochs, batch_size, momentum: supervised SGD fine-tuning of the whole net.
        lr_sigmoid, lr_tanh: its learning rate per activation, the same for every arm (a sigmoid's
            slope is at most 1/4, so its gradients are smaller).
        seed: data split and first training seed; ``seeds``: training seeds ``seed, seed+1, ...``.
    """

    dataset: str = "mnist5k"
    data_dir: str | None = None
    n_labelled: int = 1_000
    depth: int = 5
    width: int = 256
    pretrain_epochs: int = 10
    pretrain_batch: int = 32
    epochs: int = 30
    batch_size: int = 32
    momentum: float = 0.9
    lr_sigmoid: float = 0.1
    lr_tanh: float = 0.01
    seed: int = 0
    seeds: int = 3

    COUNTS = ("n_labelled", "depth", "width", "pretrain_epochs", "pretrain_batch", "epochs", "batch_size",
              "seeds")
    POSITIVE = ("lr_sigmoid", "lr_tanh")
    QUICK = {"n_labelled": 200, "width": 32, "pretrain_epochs": 1, "epochs": 2, "seeds": 1}

    def lr(self, activation: str) -> float:
        """The fine-tuning learning rate of ``activation``."""
        return self.lr_sigmoid if activation == "sigmoid" else self.lr_tanh


@dataclass(frozen=True)
class Bengio2007Cell:
    """One net: an activation, an arm (:data:`ARMS`), a training seed."""

    config: Bengio2007Config
    activation: str
    arm: str
    seed: int


def cells(config: Bengio2007Config) -> list[Bengio2007Cell]:
    """Every (activation, arm, seed) run."""
    return [Bengio2007Cell(config, act, arm, seed) for act in ACTIVATIONS for arm in ARMS
            for seed in seeds_of(config)]


def run_cell(cell: Bengio2007Cell) -> list[dict[str, Any]]:
    """Build, (pre)train and fine-tune one net; return its records.

    Raises:
        DataError: the data set cannot be loaded.
        InitlabError: the pretraining diverged (:func:`initlab.pretrain_layerwise`).
    """
    from initlab.experiments.training import fit
    from initlab.models import mlp
    from initlab.pretrain import pretrain_layerwise

    c = cell.config
    torch.set_flush_denormal(True)
    ds = dataset(c.dataset, c.data_dir, c.seed, c.n_labelled, False)
    label, start, method = ARMS[cell.arm]
    gen = torch.Generator().manual_seed(derive_seed(cell.seed, NAME, cell.activation, cell.arm))
    model = mlp(int(ds.n_features), c.width, c.depth, int(ds.n_classes), cell.activation)
    init_mlp_(model, start, cell.activation, generator=gen)
    common = {"experiment": NAME, "scheme": cell.arm, "activation": cell.activation, "layer": None,
              "seed": cell.seed, "source": "ours", "arm": label, "dataset": ds.name}
    records: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    if method is not None:
        result = pretrain_layerwise(model, ds.x_train, method=method, epochs_per_layer=c.pretrain_epochs,
                                    batch_size=c.pretrain_batch, generator=gen, progress=False)
        records += retag(result.records, NAME, scheme=cell.arm, activation=cell.activation, seed=cell.seed,
                         arm=label, dataset=ds.name)
    records.append(make_record(**common, stat="pretrain_seconds", value=time.perf_counter() - t0))
    fitted = fit(model, ds, {k: common[k] for k in ("experiment", "scheme", "activation", "layer", "seed")},
                 epochs=c.epochs, batch_size=c.batch_size, lr=c.lr(cell.activation), momentum=c.momentum,
                 evals_per_epoch=1, target_accuracy=1.0, generator=gen)
    records += retag(fitted, NAME, arm=label, dataset=ds.name)
    records += [make_record(**common, stat="test_error_pct_at_epoch", value=100.0 * (1.0 - r["value"]),
                            epoch=r["epoch"]) for r in fitted if r["stat"] == "test_accuracy"]
    final = next(r for r in fitted if r["stat"] == "final_test_accuracy")
    records.append(make_record(**common, stat="test_error_pct", value=100.0 * (1.0 - final["value"]),
                               epoch=c.epochs, n_test=int(ds.x_test.shape[0]), n_classes=int(ds.n_classes)))
    return records


def _medians(records: list[dict[str, Any]], activation: str) -> dict[str, tuple[float, int]]:
    out = {}
    for arm in ARMS:
        rows = [r for r in records if r["stat"] == "test_error_pct" and r.get("source") == "ours"
                and r["activation"] == activation and r["scheme"] == arm]
        if rows:
            chance = chance_error_pct(rows[0])  # a diverged run (error nan) counts as a guess
            out[arm] = (seed_stats((r["value"] for r in rows), diverged=chance)[0], int(rows[0]["n_test"]))
    return out


def _compare(med: dict[str, tuple[float, int]], arm: str, base: str) -> tuple[bool | None, str]:
    """Whether ``arm``'s median error is lower than ``base``'s by more than 2 standard errors;
    ``None`` when the difference is within them."""
    (a, n), (b, _) = med[arm], med[base]
    se2 = 2 * math.hypot(error_se_pct(a, n), error_se_pct(b, n))
    nums = f"{ARMS[arm][0]} {a:.1f} % vs {ARMS[base][0]} {b:.1f} % (medians; 2 SE = {se2:.1f} points)"
    if b - a > se2:
        return True, nums
    if a - b > se2:
        return False, nums
    return None, nums


#: Each arm in a sentence of its own.
_PLAIN = {"torch_default": "the standard init without pretraining",
          "xavier_normal": "plain Xavier init, no pretraining",
          "pretrain_autoencoder": "autoencoder pretraining", "pretrain_rbm": "RBM pretraining"}
#: A median test error (%) at least this high: the net did not learn (chance is 90 % on 10 classes).
STUCK_ERROR_PCT = 85.0


def _pretraining_verdict(med: dict[str, tuple[float, int]], arm: str, act: str) -> dict[str, Any]:
    """Does pretraining ``arm`` lower the ``act`` net's error against no pretraining from the
    standard init? Against a baseline that did not learn at all (:data:`STUCK_ERROR_PCT`) the answer
    says so and is "partly agrees": the papers' baseline learned (2.40 %)."""
    agrees, nums = _compare(med, arm, "torch_default")
    claim = f"{ARMS[arm][0]} lowers the {act} net's test error against no pretraining"
    base = med["torch_default"][0]
    if agrees and base >= STUCK_ERROR_PCT:
        paper = PAPER_NUMBERS["torch_default"][0][0]
        text = (f"partly agrees: {act}: {nums}. But our {act} net without pretraining stayed at chance "
                f"({base:.1f} % error) while the papers' reached {paper:.2f} %: here pretraining made the "
                "difference between learning and not learning, not the papers' gain over a net that learns.")
        return verdict_record(NAME, claim, PARTLY, text, activation=act)
    word = {True: "agrees", False: "does not agree", None: "cannot tell"}[agrees]
    return verdict_record(NAME, claim, agrees, f"{word}: {act}: {nums}.", activation=act)


def _beyond_verdict(med: dict[str, tuple[float, int]], act: str) -> dict[str, Any]:
    """Our own claim, not the papers': the better pretraining beats Xavier's init (holds / does not
    hold / cannot tell), with the best arm of the run named."""
    best = min(("pretrain_rbm", "pretrain_autoencoder"), key=lambda a: med[a][0])
    agrees, nums = _compare(med, best, "xavier_normal")
    word = {True: "holds", False: "does not hold", None: "cannot tell"}[agrees]
    lead = {True: "pretraining still helps", False: "Xavier's init does better",
            None: "no difference this run can resolve"}[agrees]
    top = min(med, key=lambda a: med[a][0])
    text = f"{word}: {lead} on {act}: {nums}. The best arm on {act} is {_PLAIN[top]}, at {med[top][0]:.1f} %"
    if med["xavier_normal"][0] >= STUCK_ERROR_PCT:
        text += "; Xavier's net did not learn either (error near chance)"
    claim = f"beyond the papers: the better pretraining beats Xavier's init ({act})"
    return verdict_record(NAME, claim, agrees, text + ".", word=word, activation=act)


def conclude(config: Bengio2007Config, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The papers' numbers and, per activation, verdicts: does each pretraining lower the test error
    against no pretraining from the standard init (the papers' comparison), and against Xavier's
    init (a later random init, not in the papers: "holds" or "does not hold")? A difference within
    2 standard errors of the test set is "cannot tell"."""
    out = [paper_record(NAME, arm, "sigmoid", "test_error_pct", value, where=where, dataset="mnist",
                        arm=ARMS[arm][0])
           for arm, rows in PAPER_NUMBERS.items() for value, where in rows]
    for act in ACTIVATIONS:
        med = _medians(records, act)
        if len(med) < len(ARMS):
            continue
        out += [_pretraining_verdict(med, arm, act) for arm in ("pretrain_rbm", "pretrain_autoencoder")]
        out.append(_beyond_verdict(med, act))
    return out


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def describe(config: Bengio2007Config) -> dict[str, str]:
    """The section's texts for ``config``."""
    c = config
    return {
        "citation": "Y. Bengio, P. Lamblin, D. Popovici, H. Larochelle, \"Greedy layer-wise training of deep "
                    "networks\", NIPS 2007 (Table 1); G. E. Hinton, R. R. Salakhutdinov, \"Reducing the "
                    "dimensionality of data with neural networks\", Science 2006.",
        "claim": "Training each hidden layer in turn without labels (an RBM, or an autoencoder) and then "
                 "fine-tuning the whole net with labels gives a deep sigmoid net a much lower test error "
                 "than training it from a random start; the gain is largest when labels are few.",
        "paper_setup": "Deep sigmoid nets on the full MNIST training set; Bengio et al. 2007, Table 1: test "
                       "error 2.40 % without pretraining, 1.40 % with auto-associator pretraining, 1.20 % "
                       "for the DBN (RBM pretraining); Hinton & Salakhutdinov 2006: 1.2 % for an RBM-"
                       "pretrained 784-500-500-2000-10 net against 1.6 % for the best randomly initialized "
                       "backprop net.",
        "our_setup": f"{c.depth} hidden layers of {c.width} units, sigmoid or tanh; {c.n_labelled:,} "
                     f"labelled {c.dataset} digits (stratified), pixels in [0, 1]; test error on its "
                     f"1,000 test digits after {plural(c.epochs, 'epoch')} of SGD (momentum {c.momentum:g}, "
                     f"batch {c.batch_size}, lr {c.lr_sigmoid:g} for sigmoid and {c.lr_tanh:g} for tanh, the "
                     "same for every arm). Pretraining: initlab's layer-wise pretraining, "
                     f"{plural(c.pretrain_epochs, 'epoch')} per layer on the same images without labels "
                     "(RBM: CD-1, SGD lr 0.01, momentum 0.5; autoencoder: Adam lr 1e-3, untied decoder), "
                     "started from the standard init; the RBM's hidden units are "
                     "logistic, so the tanh net gets its weights as they are. "
                     f"{_cap(seeds_text(c))}.",
        "scale": f"{c.n_labelled:,} labelled digits instead of 60,000 (the small-data regime where "
                 f"pretraining is said to help most), width {c.width}, "
                 f"{plural(c.pretrain_epochs, 'pretraining epoch')} per layer and a fixed fine-tuning budget "
                 "instead of training to convergence.",
    }


REPRODUCTION = Reproduction(
    name=NAME,
    title="Bengio et al. 2007 / Hinton & Salakhutdinov 2006: layer-wise pretraining on 1,000 digits",
    summary="Bengio et al. 2007 / Hinton & Salakhutdinov 2006: RBM and autoencoder pretraining vs none, "
            "deep sigmoid/tanh MLP, 1,000 labelled digits",
    config=Bengio2007Config,
    cells=cells,
    run_cell=run_cell,
    conclude=conclude,
    describe=describe,
)
