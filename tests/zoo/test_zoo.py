"""The zoo: the models people train, from code and configs (nothing downloaded). For each, under
"auto" and "variance": every parameter planned, dry runs bit-identical, logits that start near
unit scale, and the propagated second moments of every layer's output checked against a forward
pass (width >= 256 unless stated; tolerances below)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from initlab import init_model, zoo
from initlab.model import DetectionFallbackWarning, SkippedParameterWarning

NAMES = zoo.names(available_only=False)


def _need(name: str) -> None:
    if name not in zoo.names():
        pytest.skip(f"{name} needs {zoo.ZOO[name].needs}, which is not installed")


def _model_and_inputs(name: str, width: int | None = None, size: int = 8, batch: int = 8):
    _need(name)
    model = zoo.build(name, width)
    x = zoo.ZOO[name].inputs(model, batch, torch.Generator().manual_seed(1))
    if isinstance(x, torch.Tensor) and x.dim() == 4:  # small images: the same layers, a cheaper forward
        x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    return model, x


def _run(model, x):
    with torch.no_grad():
        return model(**x) if isinstance(x, dict) else model(x)


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_planned_and_dry_run_leaves_the_model_bit_identical(name):
    model, x = _model_and_inputs(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    for scheme in ("auto", "variance"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", SkippedParameterWarning)
            warnings.simplefilter("error", DetectionFallbackWarning)
            plan = init_model(model, scheme, example_inputs=x, dry_run=True)
        assert plan.skipped == [] and {r.name for r in plan.rows} == params, scheme
        assert all(r.scheme for r in plan.rows), [r.name for r in plan.rows if not r.scheme]
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("name", NAMES)
def test_auto_starts_the_logits_near_unit_scale(name):
    """The model's output std at init under "auto" lies in [0.3, 3] (the issue's bound), for
    2 weight seeds."""
    model, x = _model_and_inputs(name)
    for seed in (0, 1):
        init_model(model, "auto", example_inputs=x, generator=torch.Generator().manual_seed(seed))
        std = zoo.ZOO[name].logits(_run(model, x)).std().item()
        assert 0.3 <= std <= 3.0, (seed, std)


def _units(t: torch.Tensor, conv: bool) -> int:
    """Output units of a layer: channels (dim 1) of a conv map, else features (the last dim)."""
    return int(t.shape[1] if conv and t.dim() > 2 else t.shape[-1])


def _measured_vs_predicted(name: str, scheme: str, width: int, seeds=(100, 101, 102)):
    """Per layer (rows with a predicted q_out, in plan order): ``(sqrt(measured E[y^2] / predicted),
    narrowest units so far)``, the measured second moment averaged over ``seeds`` weight draws."""
    acc: dict[str, list[float]] = {}
    pred: dict[str, float] = {}
    units: dict[str, int] = {}
    for seed in seeds:
        model, x = _model_and_inputs(name, width, batch=16)
        plan = init_model(model, scheme, example_inputs=x, generator=torch.Generator().manual_seed(seed))
        outs: dict[str, torch.Tensor] = {}
        mods = dict(model.named_modules())
        hooks = [mods[q].register_forward_hook(
                 lambda m, a, o, q=q, outs=outs: outs.setdefault(q, o[0] if isinstance(o, tuple) else o))
                 for q in {r.module for r in plan.rows if r.q_out is not None} if q in mods]
        _run(model, x)
        for h in hooks:
            h.remove()
        narrowest = 1 << 30
        for r in plan.rows:
            if r.q_out is None or r.module not in outs or not r.name.endswith("weight"):
                continue
            if r.module_type in ("Embedding", "MultiheadAttention"):  # lookups; MHA's output is its own row
                continue
            out = outs[r.module]
            if r.q_out == 0:  # a zeroed residual branch end (no norm in the model): exactly 0 measured
                assert not out.any(), r.name
                continue
            narrowest = min(narrowest, _units(out, "Conv" in r.module_type))
            acc.setdefault(r.name, []).append(out.double().square().mean().item())
            pred[r.name], units[r.name] = r.q_out, narrowest
    return {k: (math.sqrt(sum(v) / len(v) / pred[k]), units[k]) for k, v in acc.items()}


#: Zoo models whose every layer is checked against the prediction at width 256 (image models on
#: 8x8 inputs; the U-Net at 128, its concatenation 256 wide). The tolerance on the std ratio is the
#: issue's 15% where every layer up to this one is >= 256 units wide. Narrower layers make the
#: measurement noisy, not the prediction wrong: each unit's weight row is one draw, so a unit's
#: offset and scale fluctuate by ~1/sqrt(fan_in) and the channel average by ~1/sqrt(units); in a
#: residual stream the offsets of the narrowest stage persist downstream (ResNet-20's first stage:
#: 64 channels; measured per-draw spread 0.14-0.20 in std at width 256, 0.075 at 1024, and the
#: 16-draw mean within 4%). So the tolerance is 0.15 * sqrt(256 / u), u the narrowest width so far
#: (64 channels: 0.30; a 10-class head: 0.76), on the mean of 3 draws.
PREDICTED = ("mixed_mlp", "resnet20_nonorm", "resnet20", "mobilenet", "unet", "lstm_lm",
             "transformer_encoder", "gpt2", "bert", "vit", "llama")


@pytest.mark.parametrize("name", PREDICTED)
@pytest.mark.parametrize("scheme", ["auto", "variance"])
def test_measured_layer_outputs_match_the_propagated_prediction(name, scheme):
    _need(name)
    if (name, scheme) == ("mixed_mlp", "auto"):
        pytest.skip("a plain chain: 'auto' starts it isometric (orthogonal links, centring biases), "
                    "which mean field does not predict; its rows carry no q_out")
    width = {"resnet20": 256, "resnet20_nonorm": 256, "unet": 128}.get(name, 256)
    ratios = _measured_vs_predicted(name, scheme, width)
    assert ratios, "no layer has a prediction"
    bad = {k: (round(v, 3), u) for k, (v, u) in ratios.items()
           if abs(v - 1) > 0.15 * math.sqrt(256 / min(u, 256))}
    assert not bad, bad
    wide = [v for v, u in ratios.values() if u >= 256]
    assert all(abs(v - 1) <= 0.15 for v in wide)
