"""A zoo of the models people train, built from code or configs (nothing downloaded), with their
example inputs and their own initializations, for tests and benchmarks of whole-model init."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from initlab.errors import InitlabError

__all__ = ["ZooModel", "ZOO", "build", "names", "plain_cnn", "cifar_resnet", "char_gpt"]


@dataclass(frozen=True)
class ZooModel:
    """One reference model.

    Attributes:
        name: the zoo key.
        build: ``(width) -> nn.Module`` with torch's (or the library's) default init.
        inputs: ``(model, batch, generator) -> inputs`` (a tensor or a dict of keyword inputs).
        own_init: the model family's own init, in place (HF ``_init_weights``, torchvision's He
            fan_out), or ``None`` when the family has none beyond torch's defaults.
        logits: ``(model output) -> logits tensor``.
        needs: a module the model needs (``"transformers"``), or ``None``.
        width: the default width (hidden size; a ResNet's last stage, ``4 x`` its first).
    """

    name: str
    build: Callable[[int], nn.Module]
    inputs: Callable[[nn.Module, int, torch.Generator], object]
    own_init: Callable[[nn.Module], None] | None = None
    logits: Callable[[object], torch.Tensor] = lambda out: out  # noqa: E731
    needs: str | None = None
    width: int = 256


# ---- plain torch models ---------------------------------------------------------------------------


class MixedMLP(nn.Sequential):
    """784 -> width (ReLU) -> width (tanh) -> width (sigmoid) -> width (GELU) -> 10."""

    def __init__(self, width: int) -> None:
        acts = [nn.ReLU(), nn.Tanh(), nn.Sigmoid(), nn.GELU()]
        layers: list[nn.Module] = []
        for i, act in enumerate(acts):
            layers += [nn.Linear(784 if i == 0 else width, width), act]
        super().__init__(*layers, nn.Linear(width, 10))


class BasicBlock(nn.Module):
    """CIFAR ResNet block (He et al. 2016): conv-(bn)-relu-conv-(bn), identity or 1x1 shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, norm: bool) -> None:
        super().__init__()
        bn = (lambda c: nn.BatchNorm2d(c)) if norm else (lambda c: nn.Identity())
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=not norm)
        self.bn1 = bn(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=not norm)
        self.bn2 = bn(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=not norm), bn(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet-(6n+2): three stages of ``n`` blocks at widths ``w, 2w, 4w``."""

    def __init__(self, n: int = 3, width: int = 16, norm: bool = True, classes: int = 10,
                 in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, 1, 1, bias=not norm)
        self.bn = nn.BatchNorm2d(width) if norm else nn.Identity()
        blocks, cin = [], width
        for stage, cout in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, 2 if stage and i == 0 else 1, norm))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, classes)

    def forward(self, x):
        h = self.blocks(F.relu(self.bn(self.stem(x))))
        return self.head(F.adaptive_avg_pool2d(h, 1).flatten(1))


def _he_fan_out_(model: nn.Module) -> None:
    """torchvision's ResNet init: convs ``kaiming_normal_(mode="fan_out")``, norms 1/0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class MobileNet(nn.Module):
    """Depthwise-separable blocks (MobileNet v1): 3x3 depthwise + 1x1 pointwise, ReLU6."""

    def __init__(self, width: int = 64, blocks: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, 2, 1)
        layers: list[nn.Module] = []
        for _ in range(blocks):
            layers += [nn.Conv2d(width, width, 3, 1, 1, groups=width), nn.ReLU6(),
                       nn.Conv2d(width, width, 1), nn.ReLU6()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        return self.head(self.body(F.relu6(self.stem(x))).mean((2, 3)))


class UNet(nn.Module):
    """A two-level U-Net: down, bottleneck, up with the encoder's features concatenated."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.enc1 = nn.Conv2d(3, width, 3, 1, 1)
        self.enc2 = nn.Conv2d(width, 2 * width, 3, 2, 1)
        self.mid = nn.Conv2d(2 * width, 2 * width, 3, 1, 1)
        self.up = nn.ConvTranspose2d(2 * width, width, 2, 2)
        self.dec = nn.Conv2d(2 * width, width, 3, 1, 1)
        self.out = nn.Conv2d(width, 2, 1)

    def forward(self, x):
        e1 = F.relu(self.enc1(x))
        m = F.relu(self.mid(F.relu(self.enc2(e1))))
        d = F.relu(self.dec(torch.cat([F.relu(self.up(m)), e1], dim=1)))
        return self.out(d)


class LSTMLM(nn.Module):
    """Embedding -> 2-layer LSTM -> linear head (a word-level language model)."""

    def __init__(self, width: int = 256, vocab: int = 500) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, width)
        self.lstm = nn.LSTM(width, width, 2, batch_first=True)
        self.head = nn.Linear(width, vocab)

    def forward(self, ids):
        return self.head(self.lstm(self.emb(ids))[0])


class Encoder(nn.Module):
    """torch's ``nn.TransformerEncoder`` (pre-LN, GELU) over an input projection, mean-pooled head."""

    def __init__(self, width: int = 256, layers: int = 2) -> None:
        super().__init__()
        self.inp = nn.Linear(32, width)
        layer = nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        return self.head(self.encoder(self.inp(x)).mean(1))


def _images(size: int) -> Callable[[nn.Module, int, torch.Generator], torch.Tensor]:
    return lambda model, batch, g: torch.randn(batch, 3, size, size, generator=g)


def _tokens(vocab: int, length: int) -> Callable[[nn.Module, int, torch.Generator], torch.Tensor]:
    return lambda model, batch, g: torch.randint(0, vocab, (batch, length), generator=g)


# ---- Hugging Face models, from configs --------------------------------------------------------------


def _hf(kind: str, width: int) -> nn.Module:
    import transformers as tf

    common = dict(hidden_size=width, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=4 * width)
    if kind == "gpt2":
        cfg = tf.GPT2Config(n_layer=2, n_embd=width, n_head=4, vocab_size=512, n_positions=64,
                            bos_token_id=0, eos_token_id=0)
        return tf.GPT2LMHeadModel(cfg)
    if kind == "bert":
        return tf.BertForMaskedLM(tf.BertConfig(vocab_size=512, max_position_embeddings=64, **common))
    if kind == "vit":
        cfg = tf.ViTConfig(image_size=32, patch_size=4, num_labels=10, **common)
        return tf.ViTForImageClassification(cfg)
    if kind == "llama":
        cfg = tf.LlamaConfig(vocab_size=512, max_position_embeddings=64, num_key_value_heads=4,
                             tie_word_embeddings=False, **common)
        return tf.LlamaForCausalLM(cfg)
    raise InitlabError(f"unknown HF model {kind!r}")


def _hf_own_init(model: nn.Module) -> None:
    """The family's own init: ``_init_weights`` on every module (what ``post_init`` runs)."""
    with torch.no_grad():
        model.apply(model._init_weights)
        if hasattr(model, "tie_weights"):
            model.tie_weights()


def _hf_logits(out: object) -> torch.Tensor:
    return out.logits  # type: ignore[attr-defined]


def _pixels(model: nn.Module, batch: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {"pixel_values": torch.randn(batch, 3, 32, 32, generator=g)}


def _hf_model(kind: str, inputs: Callable[[nn.Module, int, torch.Generator], object]) -> ZooModel:
    return ZooModel(kind, lambda w: _hf(kind, w), inputs, _hf_own_init, _hf_logits, "transformers")


ZOO: dict[str, ZooModel] = {
    z.name: z for z in (
        ZooModel("mixed_mlp", MixedMLP, lambda m, b, g: torch.randn(b, 784, generator=g)),
        ZooModel("resnet20", lambda w: ResNet(3, w // 4, norm=True), _images(32), _he_fan_out_, width=64),
        ZooModel("resnet20_nonorm", lambda w: ResNet(3, w // 4, norm=False), _images(32), _he_fan_out_,
                 width=64),
        ZooModel("mobilenet", MobileNet, _images(32)),
        ZooModel("unet", UNet, _images(32), width=64),
        ZooModel("lstm_lm", LSTMLM, _tokens(500, 16)),
        ZooModel("transformer_encoder", Encoder, lambda m, b, g: torch.randn(b, 16, 32, generator=g)),
        _hf_model("gpt2", _tokens(512, 32)),
        _hf_model("bert", _tokens(512, 32)),
        _hf_model("vit", _pixels),
        _hf_model("llama", _tokens(512, 32)),
    )
}


def names(available_only: bool = True) -> list[str]:
    """The zoo's model names (``available_only``: those whose optional dependency is installed)."""
    import importlib.util

    return [n for n, z in ZOO.items() if not available_only or z.needs is None
            or importlib.util.find_spec(z.needs) is not None]


def build(name: str, width: int | None = None, seed: int = 0) -> nn.Module:
    """Build zoo model ``name`` at ``width`` (default: the model's own), seeded, in eval mode.

    Raises:
        InitlabError: unknown ``name`` (the message lists the names), or its optional dependency
            (``transformers``) is missing.

    >>> build("mixed_mlp", 32)[0]
    Linear(in_features=784, out_features=32, bias=True)
    """
    if name not in ZOO:
        raise InitlabError(f"zoo model {name!r} is unknown: use one of {', '.join(ZOO)}")
    z = ZOO[name]
    if z.needs is not None and name not in names():
        raise InitlabError(f"zoo model {name!r} needs {z.needs}: pip install '{z.needs}' torch==2.13.0")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = z.build(width or z.width)
    return model.eval()


# ---- deep architectures of the time-to-accuracy benchmark (benchmarks/time_to_accuracy_arch.py) ----

_CNN_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


def plain_cnn(depth: int, channels: int = 32, activation: str = "relu", in_channels: int = 1,
              classes: int = 10) -> nn.Sequential:
    """A plain CNN: ``depth`` 3x3 convolutions, each followed by ``activation``, with no
    normalization and no residual connection, then global average pooling and a linear head.

    .. math::
        h_l = \\phi(W_l * h_{l-1} + b_l),\\quad l = 1, \\dots, depth;\\qquad
        \\text{logits} = V\\, \\mathrm{mean}_{xy}(h_{depth}) + c

    Every conv has padding 1 and stride 1 except the second and the third, stride 2, which take a
    28x28 input to 14x14 and 7x7 (the other ``depth - 3`` convs run at 7x7, so depth is cheap).
    Modules: ``features`` (conv, activation, conv, ...), ``pool``, ``flatten``, ``head``.

    Args:
        depth: number of convolutions (``>= 3``). channels: width of every conv.
        activation: ``"relu"`` or ``"tanh"``. in_channels: input channels. classes: logits.

    Shapes: input ``(B, in_channels, H, W)``, output ``(B, classes)``.

    Raises:
        InitlabError: ``depth < 3``; an unknown ``activation``.

    Source: Xiao, Bahri, Sohl-Dickstein, Schoenholz & Pennington (2018), "Dynamical isometry and a
    mean field theory of CNNs" (vanilla CNNs, no norm, no skip).

    >>> m = plain_cnn(8)
    >>> sum(isinstance(x, nn.Conv2d) for x in m.modules()), tuple(m(torch.zeros(2, 1, 28, 28)).shape)
    (8, (2, 10))
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 3:
        raise InitlabError(f"depth={depth!r} is invalid: a plain CNN needs 3 or more convs")
    if activation not in _CNN_ACTIVATIONS:
        raise InitlabError(f"activation={activation!r} is invalid: use one of {', '.join(_CNN_ACTIVATIONS)}")
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Conv2d(in_channels if i == 0 else channels, channels, 3, 2 if i in (1, 2) else 1, 1),
                   _CNN_ACTIVATIONS[activation]()]
    return nn.Sequential(OrderedDict(features=nn.Sequential(*layers), pool=nn.AdaptiveAvgPool2d(1),
                                     flatten=nn.Flatten(), head=nn.Linear(channels, classes)))


def cifar_resnet(depth: int, norm: bool = True, in_channels: int = 3, classes: int = 10,
                 width: int = 16) -> ResNet:
    """The CIFAR ResNet-``depth`` of He et al.: a 3x3 stem, three stages of ``n = (depth - 2) / 6``
    :class:`BasicBlock` s at widths ``width, 2 width, 4 width`` (stride 2 entering stages 2 and 3),
    global average pooling, a linear head.

    .. math::  depth = 6n + 2 \\quad(20, 32, 44, 56, 110, \\dots)

    ``norm=False`` replaces every BatchNorm with the identity (and gives the convs biases): the
    normalization-free ResNet that Fixup and SkipInit train. Shapes: input
    ``(B, in_channels, H, W)``, output ``(B, classes)``.

    Raises:
        InitlabError: ``depth`` is not ``6n + 2`` with ``n >= 1``.

    Source: He, Zhang, Ren & Sun (2016), "Deep residual learning for image recognition", sec. 4.2.

    >>> len(cifar_resnet(56).blocks)
    27
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise InitlabError(f"depth={depth!r} is invalid: a CIFAR ResNet has depth 6n + 2 (20, 56, 110)")
    return ResNet((depth - 2) // 6, width, norm=norm, classes=classes, in_channels=in_channels)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: separate ``q``, ``k``, ``v`` projections, torch's fused
    ``scaled_dot_product_attention(is_causal=True)``, output projection ``proj``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.proj = (nn.Linear(width, width) for _ in range(4))

    def forward(self, x):
        def split(y):  # (B, T, C) -> (B, heads, T, C / heads)
            return y.view(x.size(0), x.size(1), self.heads, -1).transpose(1, 2)

        y = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)),
                                           is_causal=True)
        return self.proj(y.transpose(1, 2).flatten(2))


class GPTBlock(nn.Module):
    """``x + attn(ln1(x))`` then ``x + mlp(ln2(x))``; with ``ln="none"`` ``ln1``/``ln2`` are the
    identity. The MLP is ``fc`` (4x width) -> GELU -> ``proj``."""

    def __init__(self, width: int, heads: int, ln: str) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width) if ln == "pre" else nn.Identity()
        self.attn = CausalSelfAttention(width, heads)
        self.ln2 = nn.LayerNorm(width) if ln == "pre" else nn.Identity()
        self.mlp = nn.Sequential(OrderedDict(fc=nn.Linear(width, 4 * width), act=nn.GELU(),
                                             proj=nn.Linear(4 * width, width)))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class CharGPT(nn.Module):
    """A GPT-style decoder over bytes; see :func:`char_gpt`."""

    def __init__(self, depth: int, width: int, heads: int, vocab: int, context: int, ln: str) -> None:
        super().__init__()
        self.context = context
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(context, width)
        self.blocks = nn.Sequential(*(GPTBlock(width, heads, ln) for _ in range(depth)))
        self.ln_f = nn.LayerNorm(width) if ln == "pre" else nn.Identity()
        self.head = nn.Linear(width, vocab, bias=False)

    def forward(self, ids):
        x = self.tok(ids) + self.pos(torch.arange(ids.size(1), device=ids.device))
        return self.head(self.ln_f(self.blocks(x)))


def char_gpt(depth: int, width: int = 128, heads: int = 4, vocab: int = 256, context: int = 128,
             ln: str = "pre") -> CharGPT:
    """A GPT-style character (byte) language model: token plus learned position embeddings,
    ``depth`` decoder blocks (:class:`GPTBlock`), a final LayerNorm (``ln="pre"``), and an untied
    linear head.

    .. math::
        x_0 = E_{tok}[ids] + E_{pos}[t],\\quad
        x \\leftarrow x + \\mathrm{attn}(\\mathrm{LN}(x)),\\quad
        x \\leftarrow x + \\mathrm{mlp}(\\mathrm{LN}(x)),\\quad
        \\text{logits} = W_{head}\\, \\mathrm{LN}_f(x_{depth})

    Options: ``ln="pre"`` (pre-LN, GPT-2) or ``ln="none"`` (every LayerNorm, the final one too, is
    the identity: ``x + attn(x)``; what T-Fixup and DeepNorm-style inits aim to train). Modules:
    ``tok``, ``pos``, ``blocks[i].attn.{q,k,v,proj}``, ``blocks[i].mlp.{fc,proj}``, ``head``.
    Shapes: input int64 ``(B, T)``, ``T <= context``, values in ``[0, vocab)``; output
    ``(B, T, vocab)`` logits.

    Raises:
        InitlabError: ``depth < 1``; ``width`` not a multiple of ``heads``; an unknown ``ln``.

    Source: Radford et al. (2019), "Language models are unsupervised multitask learners" (GPT-2);
    Karpathy, nanoGPT ``model.py``.

    >>> m = char_gpt(2, width=32, context=16)
    >>> len(m.blocks), tuple(m(torch.zeros(3, 16, dtype=torch.long)).shape)
    (2, (3, 16, 256))
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise InitlabError(f"depth={depth!r} is invalid: pass an integer >= 1")
    if width % heads:
        raise InitlabError(f"width={width!r} is not a multiple of heads={heads!r}: change one of them")
    if ln not in ("pre", "none"):
        raise InitlabError(f"ln={ln!r} is invalid: use 'pre' or 'none'")
    return CharGPT(depth, width, heads, vocab, context, ln)
