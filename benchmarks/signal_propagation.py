"""Signal propagation at init on the zoo: torch's default, the family's own init, "variance", "auto".

For every model of :mod:`initlab.zoo`, after each init: the max/min ratio of the per-layer output
std (weighted layers), the logits' std, and the error of initlab's propagated prediction (the largest
``|sqrt(measured E[y^2] / predicted) - 1|`` over layers; the prediction is the plan's ``q_out``, so
only for "variance" and "auto"). Then the wall time of ``init_model(gpt2, "auto")`` on GPT-2 124M
against the model's own ``_init_weights`` pass, measured alternately in one run (goal: <= 2x).

    python benchmarks/signal_propagation.py [--threads 1] [--models gpt2 resnet20] [--skip-124m]

Not a test: prints a table and ratios.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings

import torch

from initlab import init_model, zoo

SCHEMES = ("torch_default", "own", "variance", "auto")


def _forward(model, x):
    with torch.no_grad():
        return model(**x) if isinstance(x, dict) else model(x)


def _layer_outputs(model, x, names):
    outs, mods = {}, dict(model.named_modules())
    hooks = [mods[q].register_forward_hook(
             lambda m, a, o, q=q: outs.setdefault(q, o[0] if isinstance(o, tuple) else o)) for q in names]
    try:
        out = _forward(model, x)
    finally:
        for h in hooks:
            h.remove()
    return out, outs


def measure(name: str, scheme: str, seed: int = 0, batch: int = 8) -> dict[str, float] | None:
    """One model under one init: std spread over layers, logits std, prediction error."""
    z = zoo.ZOO[name]
    model = zoo.build(name, seed=seed)
    x = z.inputs(model, batch, torch.Generator().manual_seed(1))
    plan = None
    if scheme == "own":
        if z.own_init is None:
            return None
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            z.own_init(model)
    elif scheme != "torch_default":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plan = init_model(model, scheme, example_inputs=x, generator=torch.Generator().manual_seed(seed))
    layers = [q for q, m in model.named_modules() if any(p.dim() >= 2 for p in m.parameters(recurse=False))
              and not isinstance(m, torch.nn.Embedding)]
    out, outs = _layer_outputs(model, x, layers)
    stds = [outs[q].double().std().item() for q in layers if isinstance(outs.get(q), torch.Tensor)]
    stds = [s for s in stds if s > 0]
    err = math.nan
    if plan is not None:
        errs = [abs(math.sqrt(outs[r.module].double().square().mean().item() / r.q_out) - 1)
                for r in plan.rows if r.name.endswith("weight") and r.q_out and r.module in outs
                and isinstance(outs[r.module], torch.Tensor) and r.module_type != "Embedding"]
        err = max(errs) if errs else math.nan
    return {"spread": max(stds) / min(stds) if stds else math.nan,
            "logits": z.logits(out).double().std().item(), "pred_err": err}


def gpt2_124m_timing(reps: int) -> tuple[float, float]:
    """Median seconds of init_model(..., "auto") and of the model's own ``_init_weights`` pass on
    GPT-2 124M (12 x 768), alternated in one run."""
    import transformers

    cfg = transformers.GPT2Config()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = transformers.GPT2LMHeadModel(cfg).eval()
    ours, theirs = [], []
    for rep in range(reps):
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            init_model(model, "auto", generator=torch.Generator().manual_seed(rep))
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        with torch.no_grad():
            model.apply(model._init_weights)
        theirs.append(time.perf_counter() - t)
    return statistics.median(ours), statistics.median(theirs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--models", nargs="*", default=None, help="zoo models (default: all installed)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of the GPT-2 124M timing")
    ap.add_argument("--skip-124m", action="store_true", help="skip the GPT-2 124M timing")
    args = ap.parse_args()
    if args.threads < 1:
        ap.error(f"--threads {args.threads}: pass 1 or more")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    print(f"torch {torch.__version__}, threads {args.threads}")
    names = args.models or zoo.names()
    print(f"{'model':20s} {'init':14s} {'std max/min':>11s} {'logits std':>10s} {'pred err':>8s}")
    for name in names:
        for scheme in SCHEMES:
            r = measure(name, scheme)
            if r is None:
                print(f"{name:20s} {scheme:14s} {'(no own init)':>11s}")
                continue
            print(f"{name:20s} {scheme:14s} {r['spread']:11.3g} {r['logits']:10.3g} {r['pred_err']:8.3f}")
    if not args.skip_124m and "gpt2" in zoo.names():
        ours, theirs = gpt2_124m_timing(args.reps)
        print(f"GPT-2 124M: init_model auto {ours:.2f} s, _init_weights {theirs:.2f} s, "
              f"ratio {ours / theirs:.2f} (goal <= 2)")


if __name__ == "__main__":
    main()
