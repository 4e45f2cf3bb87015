"""Helpers of the sweep tests: tiny specs, and a model factory that counts its builds (and can crash
its worker once, or always raise)."""

from __future__ import annotations

import textwrap
from pathlib import Path

#: A model factory for ``model = "FILE.py:build"``: each build appends a line to
#: ``runs/<width>-<depth>`` next to the file (so a test can count how often a cell ran), sleeps
#: ``SLEEP`` seconds, and for a ``width`` in ``CRASH_ONCE`` kills its own process on the first build
#: (``os._exit``: the worker dies mid-cell), for one in ``RAISE`` raises every time, for one in
#: ``INTERRUPT`` raises ``KeyboardInterrupt`` (as Ctrl-C during that cell would).
FACTORY = textwrap.dedent('''
    import os
    import time
    from pathlib import Path

    from torch import nn

    SLEEP = {sleep}
    CRASH_ONCE = {crash_once}
    RAISE = {raise_}
    INTERRUPT = {interrupt}


    def build(n_features, n_classes, width, depth):
        here = Path(__file__).parent
        (here / "runs").mkdir(exist_ok=True)
        with open(here / "runs" / f"{{width}}-{{depth}}", "a") as fh:
            fh.write(f"{{os.getpid()}}\\n")
        if width in RAISE:
            raise RuntimeError(f"width {{width}} always fails")
        if width in INTERRUPT:
            raise KeyboardInterrupt
        marker = here / f"crashed-{{width}}"
        if width in CRASH_ONCE and not marker.exists():
            marker.write_text("x")
            os._exit(3)
        time.sleep(SLEEP)
        layers = [nn.Linear(n_features, width), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(width, n_classes))
''')


def write_factory(directory: Path, *, sleep: float = 0.0, crash_once: tuple = (), raise_: tuple = (),
                  interrupt: tuple = ()) -> Path:
    """Write the counting factory to ``directory/nets.py``; return its path."""
    path = directory / "nets.py"
    path.write_text(FACTORY.format(sleep=sleep, crash_once=crash_once, raise_=raise_, interrupt=interrupt))
    return path


def runs(directory: Path) -> dict[str, int]:
    """How often each ``<width>-<depth>`` model was built."""
    folder = directory / "runs"
    if not folder.is_dir():
        return {}
    return {p.name: len(p.read_text().split()) for p in folder.iterdir()}


def train_spec(factory: Path, widths: list[int], depths: list[int], seeds: list[int],
               out: Path | None = None) -> dict:
    """A train sweep of the counting factory on digits, a few SGD steps per cell."""
    sweep = {"experiment": "train", "seeds": seeds, "threads": 1}
    if out is not None:
        sweep["out"] = str(out)
    return {"sweep": sweep,
            "fixed": {"model": f"{factory}:build", "init": "he_normal", "dataset": "digits", "steps": 3,
                      "eval_every": 3, "eval_size": 50, "final_size": 50, "batch_size": 16},
            "grid": {"width": widths, "depth": depths}}


def phase_spec(depths=(1, 2), sigma_w2s=(1.0, 2.0), seeds=(0, 1)) -> dict:
    """A phase sweep of tiny cells (width 8, 5 SGD steps on digits)."""
    return {"sweep": {"experiment": "phase", "seeds": list(seeds), "threads": 1},
            "fixed": {"width": 8, "steps": 5, "dataset": "digits"},
            "grid": {"depth": list(depths), "sigma_w2": list(sigma_w2s)}}
