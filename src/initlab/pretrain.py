"""Greedy layer-wise unsupervised pretraining: the data-dependent init that opened deep learning.

For a stack of ``Linear -> activation (-> Dropout)`` blocks, train block 1 unsupervised on the
inputs, freeze it, feed its activations ("codes") to block 2, and so on up the stack; the learned
encoder weights are the initial weights that supervised training then fine-tunes.

Methods: ``"autoencoder"`` (Bengio et al. 2007), ``"denoising"`` (Vincent et al. 2008) and
``"rbm"`` (Hinton & Salakhutdinov 2006, contrastive divergence CD-1).
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from initlab.errors import InitlabError
from initlab.models import ACTIVATION_MODULES

__all__ = ["METHODS", "PretrainBlock", "PretrainResult", "find_blocks", "pretrain_layerwise"]

#: Pretraining methods and their default learning rates (Adam for the autoencoders; SGD with
#: momentum 0.5 for the RBM, as in Hinton's recipe).
METHODS: dict[str, float] = {"autoencoder": 1e-3, "denoising": 1e-3, "rbm": 1e-2}

#: Elementwise activation module types accepted after a Linear (from :mod:`initlab.models`).
_ACTIVATION_TYPES: tuple[type[nn.Module], ...] = tuple(
    {type(factory()) for factory in ACTIVATION_MODULES.values()}
)
_DROPOUT_TYPES: tuple[type[nn.Module], ...] = (nn.Dropout, nn.AlphaDropout)
_DEFAULT_DENOISING_NOISE = 0.25
_CHUNK = 4096  # rows per chunk when computing codes of a whole tensor


@dataclass(frozen=True)
class PretrainBlock:
    """One hidden block of the stack: a Linear (the encoder) and the activation after it.

    Attributes:
        name: qualified name of the Linear (e.g. ``"fc2"``).
        linear: the ``nn.Linear`` whose weight and bias pretraining sets.
        activation: the activation module (``None`` if the Linear is followed directly by another
            Linear, i.e. a linear block).
    """

    name: str
    linear: nn.Linear
    activation: nn.Module | None

    def encode(self, x: torch.Tensor, weight: torch.Tensor | None = None,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        """The block's activation ``phi(x W^T + b)`` (dropout is not applied)."""
        w = self.linear.weight if weight is None else weight
        b = self.linear.bias if bias is None else bias
        z = F.linear(x, w, b)
        return z if self.activation is None else self.activation(z)


def _flat_children(module: nn.Sequential, prefix: str = "") -> list[tuple[str, nn.Module]]:
    out: list[tuple[str, nn.Module]] = []
    for name, child in module.named_children():
        qual = f"{prefix}{name}"
        if type(child) is nn.Sequential:
            out.extend(_flat_children(child, qual + "."))
        else:
            out.append((qual, child))
    return out


def find_blocks(model: nn.Module) -> tuple[list[nn.Module], list[PretrainBlock], list[str]]:
    """Split an ``nn.Sequential`` MLP into (leading Flatten modules, hidden blocks, head names).

    A hidden block is ``Linear -> elementwise activation -> Dropout*``; a final ``Linear`` with no
    activation after it is the head (e.g. ``out`` of :func:`initlab.models.mlp`) and is not
    pretrained. Nested ``nn.Sequential`` containers are flattened.

    Raises:
        TypeError: ``model`` is not an ``nn.Sequential``.
        InitlabError: the first module that is not Flatten (leading), Linear, an elementwise
            activation or Dropout, named; or a model with no hidden block.

    >>> from initlab.models import mlp
    >>> _, blocks, head = find_blocks(mlp(8, 16, 3, 2, "tanh"))
    >>> [b.name for b in blocks], head
    (['fc1', 'fc2', 'fc3'], ['out'])
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(
            f"pretrain_layerwise works on nn.Sequential MLPs (Linear + activation blocks), got "
            f"{type(model).__name__}: build the stack with nn.Sequential or initlab.models.mlp"
        )
    children = _flat_children(model)
    pre: list[nn.Module] = []
    blocks: list[PretrainBlock] = []
    i, n = 0, len(children)
    while i < n:
        name, m = children[i]
        if isinstance(m, nn.Flatten) and not blocks:
            pre.append(m)
            i += 1
            continue
        if isinstance(m, nn.Linear):
            if isinstance(m.weight, nn.parameter.UninitializedParameter):
                raise InitlabError(f"pretrain_layerwise: layer {name!r} is a lazy Linear that is not "
                                   "initialised yet: run one forward pass first")
            act = None
            j = i + 1
            if j < n and isinstance(children[j][1], _ACTIVATION_TYPES):
                act = children[j][1]
                j += 1
            while j < n and isinstance(children[j][1], _DROPOUT_TYPES):
                j += 1
            blocks.append(PretrainBlock(name, m, act))
            i = j
            continue
        raise InitlabError(
            f"pretrain_layerwise cannot handle module {name!r} ({type(m).__name__}): it pretrains "
            "nn.Sequential MLPs made of Linear -> elementwise activation (-> Dropout) blocks "
            "(an optional leading Flatten and a final Linear head are allowed)"
        )
    head: list[str] = []
    if len(blocks) > 1 and blocks[-1].activation is None:
        head.append(blocks.pop().name)
    if not blocks or (len(blocks) == 1 and blocks[0].activation is None):
        raise InitlabError(
            "pretrain_layerwise: the model has no hidden Linear + activation block to pretrain"
        )
    return pre, blocks, head


@dataclass
class PretrainResult:
    """Result of :func:`pretrain_layerwise`.

    Attributes:
        method: ``"autoencoder"``, ``"denoising"`` or ``"rbm"``.
        layers: names of the pretrained Linear layers, bottom to top.
        head: names of the layers left alone (the output head).
        losses: layer name -> reconstruction loss per epoch (mean squared error per element,
            averaged over the epoch's examples).
        visible: layer name -> ``"gaussian"`` / ``"bernoulli"`` (RBM visible units; ``None`` else).
    """

    method: str
    layers: list[str]
    head: list[str]
    losses: dict[str, list[float]]
    visible: dict[str, str | None] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def records(self) -> list[dict[str, Any]]:
        """Tidy records: one per (layer, epoch) with ``experiment="pretrain"``,
        ``stat="reconstruction_loss"``, ``epoch`` from 1, ``scheme`` = the method, plus extras
        ``method``, ``visible``, ``tied``, ``noise``."""
        rows = []
        for layer in self.layers:
            for epoch, value in enumerate(self.losses[layer], start=1):
                rows.append({
                    "experiment": "pretrain", "scheme": f"pretrain-{self.method}",
                    "activation": self.settings.get("activations", {}).get(layer),
                    "layer": layer, "stat": "reconstruction_loss", "value": value, "epoch": epoch,
                    "seed": self.settings.get("seed"), "method": self.method,
                    "visible": self.visible.get(layer), "tied": self.settings.get("tied"),
                    "noise": self.settings.get("noise"),
                })
        return rows

    def table(self) -> str:
        """Text table: per layer the first and last epoch's reconstruction loss."""
        head = f"{'layer':<16} {'epochs':>6} {'first loss':>11} {'last loss':>10} {'ratio':>7}"
        lines = [head, "-" * len(head)]
        for layer in self.layers:
            ls = self.losses[layer]
            lines.append(f"{layer:<16} {len(ls):>6d} {ls[0]:>11.4g} {ls[-1]:>10.4g} {ls[-1] / ls[0]:>7.3f}")
        lines.append(f"method {self.method}; head left alone: {', '.join(self.head) or '(none)'}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _is_real(value: Any) -> bool:
    """A real number (Python or NumPy scalar), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _input_of(batch: Any) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise InitlabError(
        f"pretrain_layerwise: a DataLoader batch of type {type(batch).__name__} is not supported: "
        "yield a tensor of inputs or a tuple (inputs, targets, ...)"
    )


def _check_x(x: torch.Tensor, pre: list[nn.Module], like: nn.Linear, what: str) -> torch.Tensor:
    in_features = like.in_features
    if not x.is_floating_point():
        raise InitlabError(f"pretrain_layerwise: {what} has dtype {x.dtype}: pass float inputs")
    x = x.to(dtype=like.weight.dtype)
    if x.numel() == 0 or x.dim() == 0 or x.shape[0] == 0:
        raise InitlabError(f"pretrain_layerwise: {what} is empty (shape {tuple(x.shape)}): pass examples")
    for m in pre:
        x = m(x)
    if x.dim() != 2 or x.shape[1] != in_features:
        raise InitlabError(
            f"pretrain_layerwise: {what} has shape {tuple(x.shape)} but the first Linear expects "
            f"(batch, {in_features}): pass inputs of that shape"
        )
    if not bool(torch.isfinite(x).all()):
        raise InitlabError(f"pretrain_layerwise: {what} contains NaN or inf: clean or impute the data first")
    return x


def _rand(shape: torch.Size, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def pretrain_layerwise(
    model: nn.Module,
    data: torch.Tensor | torch.utils.data.DataLoader,
    *,
    method: str = "autoencoder",
    epochs_per_layer: int = 5,
    lr: float | None = None,
    batch_size: int = 64,
    noise: float | None = None,
    tied: bool = False,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> PretrainResult:
    r"""Greedy layer-wise unsupervised pretraining of an ``nn.Sequential`` MLP, in place.

    Block :math:`k` (Linear :math:`W_k, b_k` and activation :math:`\phi`) is trained on the codes
    :math:`h_{k-1}` of the (already pretrained, frozen) blocks below it, :math:`h_0 = x`:

    .. math::

        h_k = \phi(W_k h_{k-1} + b_k), \qquad
        \hat h_{k-1} = W'_k h_k + c_k, \qquad
        L_k = \operatorname{mean}\,(\hat h_{k-1} - h_{k-1})^2

    * ``"autoencoder"``: minimise :math:`L_k` (Adam) with a fresh linear decoder :math:`W'_k`
      (or the tied transpose :math:`W'_k = W_k^\top` with ``tied=True``).
    * ``"denoising"``: the same, but the encoder sees a corrupted input (masking noise: each entry
      set to 0 with probability ``noise``, default 0.25) and reconstructs the clean one.
    * ``"rbm"``: a restricted Boltzmann machine with :math:`W_k` as weights and :math:`b_k` as
      hidden biases, binary (logistic) hidden units, trained by CD-1 (SGD, momentum 0.5):
      :math:`\Delta W \propto \langle h v^\top\rangle_0 - \langle h v^\top\rangle_1`. Visible units
      are Bernoulli when the layer's input lies in [0, 1] (pixel intensities, sigmoid codes), and
      Gaussian with unit variance otherwise (standardised inputs at the bottom; tanh / ReLU codes);
      with a DataLoader the first batch decides.
      The loss reported is the CD-1 reconstruction error :math:`\operatorname{mean}(v_1 - v_0)^2`.
      The learned :math:`W_k, b_k` go into the network as they are, whatever its activation: an
      exact match for sigmoid networks (as in 2006), an approximation for tanh / ReLU ones.

    Scope: the hidden blocks ``Linear -> activation (-> Dropout)`` are pretrained; a final Linear
    with no activation after it (the classifier head ``out`` of :func:`initlab.models.mlp`) is left
    alone. Dropout is not applied while pretraining. Decoders and RBM visible biases are thrown
    away afterwards. Inputs should be standardised (zero mean, unit variance per feature).

    Args:
        model: an ``nn.Sequential`` MLP (e.g. ``initlab.models.mlp``), modified in place. Its
            current weights are the starting point.
        data: inputs, a float tensor ``(n_examples, in_features)``, cast to the model's dtype
            (shuffled each epoch with
            ``generator``), or a DataLoader yielding such tensors or ``(inputs, targets)`` tuples
            (its own order is used). A leading ``nn.Flatten`` in the model is applied.
        method: ``"autoencoder"``, ``"denoising"`` or ``"rbm"``.
        epochs_per_layer: passes over the data for each block, >= 1.
        lr: learning rate; ``None`` = method default (:data:`METHODS`: 1e-3 Adam for autoencoders,
            1e-2 SGD for RBMs).
        batch_size: minibatch size for tensor data.
        noise: masking probability for ``"denoising"`` (default 0.25); must be unset or 0 otherwise.
        tied: autoencoders only: decoder weight is the encoder's transpose.
        generator: randomness for shuffling, noise, hidden samples and decoder init
            (``None``: ``torch.Generator().manual_seed(0)``; global RNG state is never read).
        progress: show a tqdm bar on stderr.

    Returns:
        :class:`PretrainResult` with the reconstruction loss per layer and epoch (``.records``).

    Raises:
        TypeError: ``model`` is not ``nn.Sequential``; ``data`` is neither tensor nor DataLoader.
        InitlabError: a module it cannot handle (named); bad settings; empty data, non-float data,
            data with NaN/inf, or a shape that does not fit the first Linear; a loss that diverges
            (lower ``lr``). On any error the model's weights are left bit-identical.

    Sources: G. E. Hinton, R. R. Salakhutdinov, "Reducing the dimensionality of data with neural
    networks", Science 2006; Y. Bengio, P. Lamblin, D. Popovici, H. Larochelle, "Greedy layer-wise
    training of deep networks", NIPS 2007; P. Vincent, H. Larochelle, Y. Bengio, P.-A. Manzagol,
    "Extracting and composing robust features with denoising autoencoders", ICML 2008.

    >>> import torch
    >>> from initlab.models import mlp
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(256, 8, generator=g)
    >>> net = mlp(8, 16, 2, 3, "tanh")
    >>> result = pretrain_layerwise(net, x, epochs_per_layer=3, generator=g)
    >>> result.layers, result.head
    (['fc1', 'fc2'], ['out'])
    >>> result.records[0]["stat"], len(result.records)
    ('reconstruction_loss', 6)
    >>> print(result.table())  # doctest: +SKIP
    """
    if method not in METHODS:
        raise InitlabError(f"pretrain_layerwise: method={method!r} is unknown: "
                           f"use one of {', '.join(METHODS)}")
    if not _is_int(epochs_per_layer) or epochs_per_layer < 1:
        raise InitlabError(f"pretrain_layerwise: epochs_per_layer={epochs_per_layer!r} is invalid: "
                           "pass an integer >= 1")
    if not _is_int(batch_size) or batch_size < 1:
        raise InitlabError(f"pretrain_layerwise: batch_size={batch_size!r} is invalid: pass an integer >= 1")
    epochs_per_layer, batch_size = int(epochs_per_layer), int(batch_size)
    lr = METHODS[method] if lr is None else lr
    if not (_is_real(lr) and math.isfinite(lr) and lr > 0):
        raise InitlabError(f"pretrain_layerwise: lr={lr!r} is invalid: pass a finite number > 0")
    lr = float(lr)
    if method == "denoising":
        noise = _DEFAULT_DENOISING_NOISE if noise is None else noise
        if not (_is_real(noise) and 0 < noise < 1):
            raise InitlabError(f"pretrain_layerwise: noise={noise!r} is invalid for method='denoising': "
                               "pass a masking probability in (0, 1)")
        noise = float(noise)
    else:
        if noise not in (None, 0, 0.0):
            raise InitlabError(f"pretrain_layerwise: noise={noise!r} needs method='denoising' "
                               f"(got method={method!r})")
        noise = 0.0
    if tied and method == "rbm":
        raise InitlabError("pretrain_layerwise: tied=True is for autoencoders; "
                           "an RBM is tied by construction")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    elif not isinstance(generator, torch.Generator):
        raise TypeError(f"pretrain_layerwise: generator must be a torch.Generator or None, "
                        f"got {type(generator).__name__}")

    pre, blocks, head = find_blocks(model)
    first_linear = blocks[0].linear
    loader = None
    if isinstance(data, torch.Tensor):
        x_all = _check_x(data.detach(), pre, first_linear, "data")
    elif isinstance(data, torch.utils.data.DataLoader):
        loader = data
        first = next(iter(loader), None)
        if first is None:
            raise InitlabError("pretrain_layerwise: the DataLoader is empty: pass one that yields batches")
        _check_x(_input_of(first).detach(), pre, first_linear, "the first DataLoader batch")
    else:
        raise TypeError(f"pretrain_layerwise: data must be a tensor or a DataLoader, "
                        f"got {type(data).__name__}")

    snapshot = [(p, p.detach().clone()) for b in blocks for p in b.linear.parameters()]
    losses: dict[str, list[float]] = {}
    visible: dict[str, str | None] = {}
    bar = tqdm(total=len(blocks) * epochs_per_layer, desc=f"pretrain ({method})", file=sys.stderr,
               disable=not progress, leave=False)
    try:
        codes = None
        for k, block in enumerate(blocks):
            below = blocks[:k]
            if loader is None:
                with torch.no_grad():
                    codes = _codes_of_tensor(x_all, below)

            def batches(codes=codes, below=below) -> Iterator[torch.Tensor]:
                if loader is None:
                    n = codes.shape[0]
                    perm = torch.randperm(n, generator=generator, device=generator.device).to(codes.device)
                    for s in range(0, n, batch_size):
                        yield codes[perm[s:s + batch_size]]
                else:
                    for i, raw in enumerate(loader):
                        x = _check_x(_input_of(raw).detach(), pre, first_linear, f"DataLoader batch {i}")
                        with torch.no_grad():
                            for b in below:
                                x = b.encode(x)
                        yield x

            if method == "rbm":
                kind = _visible_kind(codes if loader is None else next(batches()))
                visible[block.name] = kind
                losses[block.name] = _train_rbm(block, batches, kind, epochs_per_layer, lr, generator, bar)
            else:
                visible[block.name] = None
                losses[block.name] = _train_autoencoder(block, batches, epochs_per_layer, lr, noise, tied,
                                                        generator, bar)
    except BaseException:
        with torch.no_grad():
            for p, saved in snapshot:
                p.copy_(saved)
        raise
    finally:
        bar.close()

    activations = {b.name: (type(b.activation).__name__.lower() if b.activation is not None else "linear")
                   for b in blocks}
    return PretrainResult(
        method=method, layers=[b.name for b in blocks], head=head, losses=losses, visible=visible,
        settings={"epochs_per_layer": epochs_per_layer, "lr": lr, "batch_size": batch_size,
                  "noise": noise, "tied": tied, "activations": activations,
                  "seed": generator.initial_seed()},
    )


def _codes_of_tensor(x: torch.Tensor, below: list[PretrainBlock]) -> torch.Tensor:
    if not below:
        return x
    parts = []
    for s in range(0, x.shape[0], _CHUNK):
        h = x[s:s + _CHUNK]
        for b in below:
            h = b.encode(h)
        parts.append(h)
    return torch.cat(parts)


def _visible_kind(v: torch.Tensor) -> str:
    return "bernoulli" if bool((v >= 0).all()) and bool((v <= 1).all()) else "gaussian"


def _check_loss(value: float, block: PretrainBlock, epoch: int, lr: float) -> None:
    if not math.isfinite(value):
        raise InitlabError(
            f"pretrain_layerwise: the reconstruction loss of layer {block.name!r} diverged "
            f"(epoch {epoch}, lr={lr:g}): lower lr"
        )


def _train_autoencoder(block: PretrainBlock, batches, epochs: int, lr: float, noise: float, tied: bool,
                       generator: torch.Generator, bar) -> list[float]:
    lin = block.linear
    w = lin.weight.detach().clone().requires_grad_(True)
    has_bias = lin.bias is not None
    b = (lin.bias.detach().clone() if has_bias
         else torch.zeros(lin.out_features, dtype=w.dtype, device=w.device)).requires_grad_(has_bias)
    c = torch.zeros(lin.in_features, dtype=w.dtype, device=w.device, requires_grad=True)
    params = [w, c] + ([b] if lin.bias is not None else [])
    if tied:
        w_dec = None
    else:  # fresh decoder, torch's Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = width
        bound = 1.0 / math.sqrt(lin.out_features)
        w_dec = ((_rand(torch.Size((lin.in_features, lin.out_features)), generator, w.device) * 2 - 1)
                 * bound).to(w.dtype).requires_grad_(True)
        params.append(w_dec)
    opt = torch.optim.Adam(params, lr=lr)
    history = []
    for epoch in range(1, epochs + 1):
        total, count = 0.0, 0
        for v in batches():
            v_in = v
            if noise > 0:
                v_in = v * (_rand(v.shape, generator, v.device) >= noise).to(v.dtype)
            h = block.encode(v_in, w, b)
            recon = F.linear(h, w.t() if tied else w_dec, c)
            loss = F.mse_loss(recon, v)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * v.shape[0]
            count += v.shape[0]
        history.append(total / count)
        _check_loss(history[-1], block, epoch, lr)
        bar.update(1)
    with torch.no_grad():
        lin.weight.copy_(w)
        if lin.bias is not None:
            lin.bias.copy_(b)
    return history


def _train_rbm(block: PretrainBlock, batches, kind: str, epochs: int, lr: float,
               generator: torch.Generator, bar, momentum: float = 0.5) -> list[float]:
    lin = block.linear
    with torch.no_grad():
        w = lin.weight.detach().clone()
        b = (lin.bias.detach().clone() if lin.bias is not None
             else torch.zeros(lin.out_features, dtype=w.dtype, device=w.device))
        a = torch.zeros(lin.in_features, dtype=w.dtype, device=w.device)
        vel = [torch.zeros_like(t) for t in (w, b, a)]
        history = []
        for epoch in range(1, epochs + 1):
            total, count = 0.0, 0
            for v0 in batches():
                n = v0.shape[0]
                p_h0 = torch.sigmoid(F.linear(v0, w, b))
                h0 = (_rand(p_h0.shape, generator, p_h0.device) < p_h0).to(p_h0.dtype)
                mean_v1 = F.linear(h0, w.t(), a)
                v1 = torch.sigmoid(mean_v1) if kind == "bernoulli" else mean_v1
                p_h1 = torch.sigmoid(F.linear(v1, w, b))
                grads = ((p_h0.t() @ v0 - p_h1.t() @ v1) / n, (p_h0 - p_h1).mean(0), (v0 - v1).mean(0))
                for t, g, m in zip((w, b, a), grads, vel, strict=True):
                    m.mul_(momentum).add_(g, alpha=lr)
                    t.add_(m)
                total += float(((v1 - v0) ** 2).mean()) * n
                count += n
            history.append(total / count)
            _check_loss(history[-1], block, epoch, lr)
            bar.update(1)
        lin.weight.copy_(w)
        if lin.bias is not None:
            lin.bias.copy_(b)
    return history
