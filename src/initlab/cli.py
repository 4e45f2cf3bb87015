"""The ``initlab`` command line: thin wrappers that parse options, show progress, and call the
library. Every bad value becomes one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import sys

import click

from initlab import __version__
from initlab.cli_reproduce import reproduce_command
from initlab.cli_sweep import sweep_group
from initlab.errors import InitlabError

#: Exit statuses of an interrupted run, as a shell reports a process killed by the signal
#: (128 + signal number): Ctrl-C (SIGINT) and ``kill`` (SIGTERM).
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

#: Exceptions that mean "the user gave a bad value"; the CLI prints them as one line, exit 2.
USER_ERRORS = (InitlabError, ValueError, TypeError, FileNotFoundError, FileExistsError,
               NotADirectoryError, PermissionError, KeyError)


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@click.version_option(__version__, prog_name="initlab")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """initlab: weight initialization for deep networks — every scheme, and why it works.

    Start with `initlab demo`, which writes initlab-report/index.html.
    """
    if ctx.invoked_subcommand is None:  # bare `initlab`: show the commands, not an error
        click.echo(ctx.get_help())


# ---- options shared by several commands ------------------------------------------------------

#: Every ``--seed``: a torch generator seed (``manual_seed`` takes at most 64 bits; the
#: experiments derive 63-bit seeds from it), so one rule and one message for all commands.
SEED = click.IntRange(0, 2**63 - 1)


def _seed_option(help_text: str):
    """The ``--seed`` option of every command (type :data:`SEED`, default 0)."""
    return click.option("--seed", type=SEED, default=0, show_default=True, help=help_text)


#: ``--threads`` of the commands that train (``initlab demo``, ``initlab phase``): their numbers
#: depend on the thread count, which the run sets and records
#: (:func:`initlab.experiments.common.torch_threads`).
_threads_option = click.option(
    "--threads", type=click.IntRange(min=0), default=1, show_default=True,
    help="torch threads for the run (0 = torch's default); the numbers depend on it, and 1 is fastest "
         "for these small nets.")


class _LazyChoice(click.Choice):
    """A ``click.Choice`` whose names come from ``load()`` on first use, so that help and
    validation share one list without importing the experiments when the CLI starts."""

    def __init__(self, load) -> None:  # no super().__init__: ``choices`` is computed
        self._load = load
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self._load())


def _phase_activations() -> tuple[str, ...]:
    from initlab.experiments.phase import ACTIVATIONS

    return ACTIVATIONS


# ---- commands are added below, one section each --------------------------------------------


# ---- gain (engineer "gains") ----------------------------------------------------------------


@cli.command("gain")
@click.argument("name")
@click.option("--param", type=float, default=None,
              help="The activation's parameter (leaky_relu slope, elu alpha, softplus beta, ...).")
def gain_command(name: str, param: float | None) -> None:
    """Forward and backward gain of activation NAME, and torch's calculate_gain.

    Forward gain 1/sqrt(E[phi(z)^2]), backward gain 1/sqrt(E[phi'(z)^2]), z ~ N(0, 1).
    """
    from initlab import gains

    forward = gains.gain(name, "forward", param)
    backward = gains.gain(name, "backward", param)
    try:
        torch_value = f"{float(gains.calculate_gain(name, param)):.6f}"
    except ValueError:
        torch_value = "torch has none"
    label = name if param is None else f"{name} (param={param:g})"
    click.echo(f"activation: {label}; pre-activation z ~ N(0, 1)")
    click.echo(f"forward gain   1/sqrt(E[phi(z)^2])   {forward:.6f}")
    click.echo(f"backward gain  1/sqrt(E[phi'(z)^2])  {backward:.6f}")
    click.echo(f"torch calculate_gain                 {torch_value}")


# ---- plan (engineer "apply") ----------------------------------------------------------------


def _add_skip_gates(model, **kw):
    from initlab.transforms import add_skip_gates

    return add_skip_gates(model, **kw)


def _add_fixup_scalars(model, **kw):
    from initlab.transforms import add_fixup_scalars

    return add_fixup_scalars(model, **kw)


#: ``initlab plan --transform NAME``: the transform each name applies.
_TRANSFORMS = {"skip_gates": _add_skip_gates, "fixup_scalars": _add_fixup_scalars}


@cli.command("plan")
@click.argument("target", metavar="FILE.py:FUNCTION")
@click.option("--input-shape", default=None,
              help="Shape of an example input, e.g. 1,3,32,32; several for a forward of several tensors, "
                   "separated by ';', quoted (nn.Transformer's src and tgt: '2,7,32;2,5,32'). If the forward "
                   "fails on it, exit 2. It finds the activations when fx cannot trace the model, and gives "
                   "the shapes the propagated scales of 'auto' and 'variance' depend on (zero padding, "
                   "pooling). Without it, an input is built from the model's first layer or its Hugging Face "
                   "config.")
@click.option("--input-dtype", type=click.Choice(["float32", "float64", "int64", "long", "int32"]),
              default="float32", show_default=True,
              help="dtype of that example input: floats are N(0, 1); int64/long/int32 are token ids drawn "
                   "uniformly below every Embedding's num_embeddings (below 2 without one), for models "
                   "that start with nn.Embedding. Needs --input-shape.")
@click.option("--scheme", default="auto", show_default=True,
              help="auto, variance, critical, or a named scheme.")
@click.option("--apply", "do_apply", is_flag=True, help="Initialize the weights (needed for --save).")
@click.option("--save", type=click.Path(dir_okay=False), default=None,
              help="Write the initialized state_dict here (torch.save); needs --apply.")
@click.option("--force", is_flag=True, help="Let --save overwrite an existing file.")
@_seed_option("Seed of the generator.")
@click.option("--sigma-b2", type=float, default=None,
              help="With --scheme critical: the bias variance of the critical point (default 0).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON instead of a table.")
@click.option("--transform", type=click.Choice(sorted(_TRANSFORMS)), default=None,
              help="First add the parameters a residual-family scheme needs: skip_gates (SkipInit / "
                   "ReZero gates, for --scheme skipinit or rezero) or fixup_scalars (for --scheme fixup); "
                   "what it added goes to stderr, and --save's state_dict holds the new parameters.")
def plan_command(target: str, input_shape: str | None, input_dtype: str, scheme: str, do_apply: bool,
                 save: str | None, force: bool, seed: int, sigma_b2: float | None, as_json: bool,
                 transform: str | None) -> None:
    """Print the init plan of the model that FUNCTION in FILE.py builds (e.g. model.py:build_model)."""
    import warnings
    from pathlib import Path

    import torch

    from initlab.model import DetectionFallbackWarning, fallback_message, init_model

    shape = _shapes(input_shape, input_dtype)
    if save is not None and not do_apply:
        raise InitlabError(f"--save {save} needs --apply: add --apply to write initialized weights")
    if sigma_b2 is not None and scheme != "critical":
        raise InitlabError(f"--sigma-b2 {sigma_b2:g} applies to --scheme critical only (this run: --scheme "
                           f"{scheme}): add --scheme critical, or drop --sigma-b2")
    if save is not None and Path(save).exists() and not force:
        raise FileExistsError(f"{save} exists: pass --force to overwrite it, or choose another path")
    if save is not None and not Path(save).resolve().parent.is_dir():
        raise FileNotFoundError(
            f"directory {Path(save).parent} of --save {save} does not exist: create it first")
    model = _build_model(target)
    example = None
    if shape is not None:  # the weights depend on --seed, not on the input
        example = _make_inputs(model, shape, input_shape, input_dtype, torch.Generator().manual_seed(seed))
    if example is not None:  # an input the user chose must fit, whatever the detection needs
        _check_forward(model, example, input_shape, shape, input_dtype)
    notes = _transform(model, scheme, transform, example)
    gen = torch.Generator().manual_seed(seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = init_model(model, scheme, example_inputs=example, generator=gen, dry_run=not do_apply,
                          sigma_b2=sigma_b2)
    for note in notes:
        click.echo(note, err=True)
    failed = _example_failure(plan.detection_note) if example is not None else None
    if failed is not None:  # an input the user chose does not fit: an error, not a guessed plan
        ids = " (with --input-dtype int64 for token ids)" if input_dtype == "float32" else ""
        raise InitlabError(f"--input-shape {input_shape}: the model's forward failed on an input of shape "
                           f"{tuple(shape)} ({failed}): pass the shape of the model's input{ids}")
    for w in caught:  # one line each on stderr; the detection fallback names the CLI's options
        message = str(w.message).strip().splitlines()[0] if str(w.message).strip() else w.category.__name__
        if issubclass(w.category, DetectionFallbackWarning):
            message = fallback_message(
                plan.detection_note, "pass --input-shape matching the model's input"
                + (" (with --input-dtype int64 for token ids)" if input_dtype == "float32" else ""))
        click.echo(f"initlab: warning: {message}", err=True)
    click.echo(plan.to_json() if as_json else plan.table())
    if save is not None:
        tmp = Path(save).with_name(f".{Path(save).name}.tmp")
        try:
            torch.save(model.state_dict(), tmp)
            tmp.replace(save)
        except (OSError, RuntimeError) as exc:
            tmp.unlink(missing_ok=True)
            raise InitlabError(f"cannot write --save {save}: {str(exc).strip().splitlines()[0]}") from None
        click.echo(f"saved initialized state_dict to {save}", err=True)


def _transform(model, scheme: str | None, transform: str | None, example) -> list[str]:
    """Check ``--scheme`` against ``--transform`` (and the parameters ``model`` already holds), then
    apply the transform, its report on stderr (``initlab plan`` and ``initlab probe``); the notes to
    print once the scheme has been applied (so a refused scheme stays one line).

    Raises:
        InitlabError: skipinit / rezero without gates; gates with fixup (no gradient would flow).
    """
    def holds(param: str) -> bool:  # a transform's parameter, added before (by FUNCTION itself)
        return any(n.rsplit(".", 1)[-1] == param for n, _ in model.named_parameters())

    if scheme in ("skipinit", "rezero") and transform != "skip_gates" and not holds("skip_gate"):
        raise InitlabError(f"--scheme {scheme} needs a gate on every residual branch, and the model has "
                           "none: add --transform skip_gates")
    if transform == "skip_gates" and scheme == "fixup":
        raise InitlabError("--transform skip_gates gates every branch at 0 and --scheme fixup zeroes each "
                           "branch's end, so neither would get a gradient: use --scheme skipinit, or "
                           "--transform fixup_scalars")
    notes = []
    if scheme == "fixup" and transform != "fixup_scalars" and not holds("fixup_scale"):
        notes.append("initlab: note: --scheme fixup without Fixup's scalar biases and multiplier: add "
                     "--transform fixup_scalars to add them")
    if transform is not None:
        report = _TRANSFORMS[transform](model, example_inputs=example, verbose=False)
        click.echo(report.summary(undo_hint=False), err=True)
    return notes


def _example_failure(detection_note: str | None) -> str | None:
    """``"Type: message"`` of the forward that failed on the example input, from an
    :attr:`initlab.apply.InitPlan.detection_note` (``"fx: ...; hooks: ..."``); ``None`` when the
    example input was not needed (fx traced the model) or ran.

    >>> _example_failure("fx: TraceError: x; hooks: RuntimeError: mat1 and mat2 shapes")
    'RuntimeError: mat1 and mat2 shapes'
    >>> _example_failure(None) is None
    True
    """
    _, sep, hooks = (detection_note or "").rpartition("; hooks: ")
    return hooks if sep and hooks and hooks != "no example_inputs" else None


# ---- demo (engineer "demo") ----------------------------------------------------------------


@cli.command("demo")
@click.option("--out", default="initlab-report", show_default=True, type=click.Path(),
              help="Report directory (index.html, figures/, results.json, results.csv).")
@_seed_option("Seeds the data split, all weights, shuffling and dropout masks.")
@click.option("--dataset", default="mnist5k", show_default=True,
              help="mnist5k, digits, fashion-mnist, mnist, or a .npz / .csv file.")
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Directory with the IDX files of fashion-mnist / mnist.")
@click.option("--depth", type=click.IntRange(1, 100), default=None,
              help="Hidden layers of the training experiment's MLP, 1-100 [default: 10; --quick: 6].")
@click.option("--width", type=click.IntRange(1, 2048), default=None,
              help="Units per hidden layer of that MLP, 1-2048 [default: 128; --quick: 64].")
@click.option("--epochs", type=click.IntRange(1, 100), default=None,
              help="Training epochs, 1-100 [default: 8; --quick: 2].")
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="At most this many training examples, 0 = all [default: 4000; --quick: 1500].")
@click.option("--quick", is_flag=True, help="Small, fast run (<= 20 s): for tests and CI.")
@click.option("--force", is_flag=True, help="Replace --out even if it is not an initlab report.")
@_threads_option
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
def demo_command(out: str, seed: int, dataset: str, data_dir: str | None, depth: int | None,
                 width: int | None, epochs: int | None, limit: int | None, quick: bool, force: bool,
                 threads: int, progress: bool) -> None:
    """Run the weight-initialization experiments on real data and write an HTML report."""
    import functools
    import time

    from initlab.experiments import DemoConfig, run_demo
    from initlab.report import check_out_dir, write_report
    from initlab.sweep.engine import map_cells

    start = time.perf_counter()
    config = DemoConfig(seed=seed, dataset=dataset, data_dir=data_dir, depth=depth, width=width,
                        epochs=epochs, limit=limit, quick=quick, threads=threads)
    check_out_dir(out, force=force)
    # the training and depth grids run through the sweep engine (one loop for every grid): here,
    # serially, no store; the demo's own bar counts the cells
    cells = functools.partial(map_cells, runner="serial", progress=False)
    with _SigtermAsInterrupt():  # `kill` cleans up like Ctrl-C: no temporary directory is left
        result = run_demo(config, progress=progress, map_cells=cells)
        path = write_report(result, out, force=force, notify=lambda message: click.echo(message, err=True))
    click.echo(f"initlab demo: wrote {path / 'index.html'} in {time.perf_counter() - start:.1f} s "
               f"({result.dataset['name']}, seed {seed})")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an interrupt so that cleanup runs like on Ctrl-C; :func:`main` exits
    with 143 (128 + SIGTERM) for it and 130 (128 + SIGINT) for Ctrl-C."""


class _SigtermAsInterrupt:
    """Within the block, SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``), so
    ``finally`` clauses run (main thread of a POSIX process only; elsewhere a no-op)."""

    def __enter__(self) -> _SigtermAsInterrupt:
        import signal
        import threading

        self.installed = hasattr(signal, "SIGTERM") and threading.current_thread() is threading.main_thread()
        if self.installed:
            self.previous = signal.signal(signal.SIGTERM, self._interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.installed:
            import signal

            signal.signal(signal.SIGTERM, self.previous)

    @staticmethod
    def _interrupt(signum: int, frame: object) -> None:
        raise Terminated


# ---- probe (engineer "probe") ---------------------------------------------------------------


#: ``--input-dtype`` of ``initlab probe`` (the names ``initlab plan`` takes).
_PROBE_DTYPES = ("float32", "float64", "int64", "long", "int32")
#: The options that build the built-in MLP (not used with FILE.py:FUNCTION).
_MLP_OPTIONS = ("depth", "width", "activation", "batch", "in_features")
#: Examples in the inputs ``probe FILE.py:FUNCTION`` builds: a head of 10 units then gives 160 values
#: per statistic (std within ~6 %), where tracing's batch of 2 gave 20 (~16 %: false "mismatch" verdicts).
_PROBE_BATCH = 16


@cli.command("probe")
@click.argument("target", metavar="[FILE.py:FUNCTION]", required=False)
@click.option("--input-shape", default=None,
              help="With FILE.py:FUNCTION: shape of the input batch, batch first, e.g. 64,3,32,32 "
                   "(several inputs: shapes separated by ';', quoted, e.g. '64,7,32;64,5,32') "
                   "[default: the inputs initlab.graph.example_inputs builds from the model's first layer, "
                   f"batch {_PROBE_BATCH}].")
@click.option("--input-dtype", type=click.Choice(_PROBE_DTYPES), default="float32", show_default=True,
              help="dtype of that input: floats are N(0, 1); int64/long/int32 are token ids drawn uniformly "
                   "below every Embedding's num_embeddings (below 2 without one). Needs --input-shape.")
@click.option("--depth", type=click.IntRange(min=1), default=5, show_default=True,
              help="MLP: hidden layers.")
@click.option("--width", type=click.IntRange(min=1), default=50, show_default=True,
              help="MLP: units per layer.")
@click.option("--activation", default="tanh", show_default=True, help="MLP: relu, tanh, sigmoid, gelu, ...")
@click.option("--scheme", default=None,
              help="MLP: named init scheme for the weights (small, large, zeros, he_normal, ...; default "
                   "glorot_normal); biases 0. With FILE.py:FUNCTION: initialize the model with init_model "
                   "(auto, variance, critical, fixup, skipinit, t_fixup, a named scheme, ...) before the "
                   "probe [default: as FUNCTION initialised it].")
@click.option("--transform", type=click.Choice(sorted(_TRANSFORMS)), default=None,
              help="With FILE.py:FUNCTION: first add SkipInit gates (skip_gates) or Fixup's scalars "
                   "(fixup_scalars) to its residual branches, as initlab plan --transform does.")
@click.option("--batch", type=click.IntRange(min=1), default=256, show_default=True,
              help="MLP: examples in the N(0, 1) input batch.")
@click.option("--in-features", type=click.IntRange(min=1), default=100, show_default=True,
              help="MLP: input dimension.")
@_seed_option("Seeds the weights (the MLP's scheme; torch's global RNG while FUNCTION builds the model, "
              "restored after), the inputs and the loss.")
@click.option("--bins", type=click.IntRange(min=0), default=64, show_default=True, help="Histogram bins.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write the records as JSON here.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None,
              help="Write the records as CSV here.")
@click.option("--force", is_flag=True, help="Let --json / --csv overwrite existing files.")
def probe_command(target: str | None, input_shape: str | None, input_dtype: str, depth: int, width: int,
                  activation: str, scheme: str | None, transform: str | None, batch: int, in_features: int,
                  seed: int, bins: int, json_path: str | None, csv_path: str | None, force: bool) -> None:
    """Probe a network: per-layer forward/backward statistics, the propagated prediction, verdicts.

    With FILE.py:FUNCTION (e.g. model.py:build_model), probes the model FUNCTION returns, as it
    initialised it, on a batch of --input-shape (N(0, 1) floats, or token ids with --input-dtype
    int64), or on inputs built from its first layer. Without, builds
    initlab.models.mlp(IN_FEATURES, WIDTH, DEPTH, activation=ACTIVATION) (no head, as in the classic
    tutorial), draws every weight from SCHEME with the activation's gain (biases 0), and probes it on
    a batch of N(0, 1) inputs. The table puts each layer's measured std next to the one
    initlab.graph.moments predicts (pred_std). With FILE.py:FUNCTION and --scheme (and --transform),
    the model is initialized by init_model first: what that start does to the signal, measured.
    """
    from initlab.probe import probe
    from initlab.records import write_text_atomic

    _check_outputs(json_path, csv_path, force)
    given = [f"--{name.replace('_', '-')}" for name in _MLP_OPTIONS if _given(name)]
    if target is not None and given:
        raise InitlabError(f"{given[0]} builds the built-in MLP, not {target}: drop it (your model's batch "
                           "is the first dim of --input-shape)")
    if target is None and (input_shape is not None or _given("input_dtype")):
        raise InitlabError("--input-shape and --input-dtype describe the input of FILE.py:FUNCTION: pass the "
                           "model too, e.g. initlab probe model.py:build_model --input-shape 64,3,32,32")
    if target is None and transform is not None:
        raise InitlabError(f"--transform {transform} adds parameters to the residual branches of a model, "
                           "and the built-in MLP has none: pass FILE.py:FUNCTION")
    gen = _generator(seed)
    if target is None:
        scheme = scheme or "glorot_normal"
        model, inputs, header = _probe_mlp(depth, width, activation, scheme, batch, in_features, gen)
        header = f"{header}, seed {seed}"
    else:
        model, inputs, header = _probe_target(target, input_shape, input_dtype, seed, gen)
        if input_shape is not None:  # an input the user chose must fit: one line, exit 2
            _check_forward(model, inputs, input_shape, _shapes(input_shape), input_dtype)
        if scheme is not None or transform is not None:
            header += _init_target(model, inputs, scheme, transform, seed)
        header = f"{header}, seed {seed}"
        from initlab.schemes import NAMED_SCHEMES

        scheme = scheme if scheme in NAMED_SCHEMES else None  # a named scheme's std is the w_expect column
    try:
        result = probe(model, inputs, bins=bins, scheme=scheme, generator=gen,
                       tags={"experiment": "probe", "seed": seed})
    except (InitlabError, TypeError):
        raise
    except Exception as exc:  # the user's forward failed on the inputs
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InitlabError(f"the forward of {target or 'the MLP'} failed on its inputs "
                           f"({type(exc).__name__}: {text}): pass --input-shape (and --input-dtype) that "
                           "the model accepts") from None
    click.echo(f"initlab probe: {header}")
    click.echo(result.table())
    verdicts = result.verdicts()
    click.echo("verdicts:" if verdicts else "verdicts: none (signal propagates healthily)")
    for verdict in verdicts:
        click.echo(f"  - {verdict.message}")
    for note in result.notes:
        click.echo(f"note: {note}")
    if json_path is not None:
        write_text_atomic(json_path, result.to_json())
        click.echo(f"wrote {len(result.records)} records to {json_path}", err=True)
    if csv_path is not None:
        write_text_atomic(csv_path, result.to_csv())
        click.echo(f"wrote {len(result.records)} records to {csv_path}", err=True)


def _init_target(model, inputs, scheme: str | None, transform: str | None, seed: int) -> str:
    """Apply ``--transform`` and ``init_model(model, scheme)`` (a generator seeded with ``seed``, as
    ``initlab plan --apply``) to the probed model; the header's words for it."""
    import warnings

    import torch
    from torch.nn.parameter import is_lazy

    from initlab.graph.record import call_model
    from initlab.model import init_model

    example = inputs  # a tensor, a tuple of them (several --input-shape) or HF keyword inputs
    if any(is_lazy(p) for p in model.parameters()):  # materialise lazy layers, so init_model sees them
        with torch.no_grad():
            call_model(model, inputs)
    notes = _transform(model, scheme, transform, example)
    words = ""
    if transform is not None:
        words = f", {transform} added ({_n_params(model)} parameters)"
    if scheme is not None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            init_model(model, scheme, example_inputs=example, generator=torch.Generator().manual_seed(seed))
        _echo_warnings(caught)  # one line each on stderr, as initlab plan prints them
        words += f", initialized by init_model(scheme={scheme!r})"
    for note in notes:
        click.echo(note, err=True)
    return words


def _given(name: str) -> bool:
    """Whether the option ``name`` of the running command was given (not its default)."""
    source = click.get_current_context().get_parameter_source(name)
    return source is not None and source is not click.core.ParameterSource.DEFAULT


def _generator(seed: int):
    """A CPU ``torch.Generator`` seeded with ``seed``."""
    import torch

    return torch.Generator().manual_seed(seed)


def _check_outputs(json_path: str | None, csv_path: str | None, force: bool) -> None:
    """Refuse --json / --csv paths that exist (without --force), lie in no directory, or coincide."""
    from pathlib import Path

    for path in (json_path, csv_path):
        if path is None:
            continue
        target = Path(path)
        if target.exists() and not force:
            raise FileExistsError(f"{path} exists: pass --force to overwrite it, or choose another path")
        if not target.parent.exists():
            raise FileNotFoundError(f"directory {target.parent} of {path} does not exist: create it first")
        if not target.parent.is_dir():
            raise NotADirectoryError(f"{target.parent} (in {path}) is not a directory: choose another path")
    if json_path and csv_path and Path(json_path).resolve() == Path(csv_path).resolve():
        raise InitlabError(f"--json and --csv name the same file {json_path}: give two paths")


def _probe_mlp(depth: int, width: int, activation: str, scheme: str, batch: int, in_features: int, gen):
    """The built-in MLP, its weights drawn from ``scheme`` (biases 0), and a N(0, 1) batch."""
    import os

    import torch

    from initlab import fans as fans_mod
    from initlab import schemes
    from initlab.init import apply_spec_
    from initlab.models import mlp
    from initlab.probe.records import _gain

    if scheme not in schemes.NAMED_SCHEMES:
        names = ", ".join(sorted(schemes.NAMED_SCHEMES))
        raise InitlabError(f"scheme {scheme!r} is unknown: use one of {names}")
    # float32 weights and their gradients, plus the activations and their gradients, kept at once
    params = in_features * width + width + (depth - 1) * (width * width + width)
    need = 4 * (2 * params + 4 * depth * batch * width)
    try:
        have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        have = None
    if have is not None and need > have:
        raise InitlabError(f"the probe needs about {need / 2**30:.3g} GiB of memory (depth {depth}, width "
                           f"{width}, in-features {in_features}, batch {batch}), more than this machine's "
                           f"{have / 2**30:.3g} GiB: reduce --width, --depth or --batch")
    model = mlp(in_features, width, depth, activation=activation)
    gain = _gain(activation)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                spec = schemes.named_spec(scheme, fans_mod.compute_fans(tuple(module.weight.shape)), gain)
                apply_spec_(module.weight, spec, generator=gen)
                if module.bias is not None:
                    module.bias.zero_()
    inputs = torch.randn(batch, in_features, generator=gen)
    return model, inputs, (f"mlp depth {depth}, width {width}, {activation}, scheme {scheme}, "
                           f"batch {batch} x {in_features}")


def _build_model(target: str):
    """Call the factory ``FILE.py:FUNCTION`` names; what it raises or returns other than a module is
    the user's error (one line)."""
    import torch

    from initlab.cli_helpers import load_factory

    factory = load_factory(target)
    try:
        model = factory()
    except Exception as exc:  # the user's code
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InitlabError(f"{target}: calling it failed: {type(exc).__name__}: {msg}") from exc
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{target} returned {type(model).__name__}, not an nn.Module: return the model")
    return model


def _echo_warnings(caught) -> None:
    """Each recorded warning as one ``initlab: warning:`` line on stderr (no source path)."""
    for w in caught:
        text = str(w.message).strip()
        click.echo(f"initlab: warning: {text.splitlines()[0] if text else w.category.__name__}", err=True)


def _n_params(model) -> str:
    """The model's parameter count, ``"1,234"`` (``"1,234 + lazy"`` while lazy ones are unmaterialised)."""
    from torch.nn.parameter import is_lazy

    params = list(model.parameters())
    n = sum(p.numel() for p in params if not is_lazy(p))
    return f"{n:,}" + (" + lazy" if any(is_lazy(p) for p in params) else "")


def _check_forward(model, example, input_shape: str, shape, input_dtype: str) -> None:
    """Run ``model`` once on ``example`` (nothing in it changes); a failure is the user's bad
    ``--input-shape``: one line, exit 2."""
    import warnings

    import torch

    from initlab.graph.record import call_model, preserved

    try:
        with warnings.catch_warnings(record=True) as caught, preserved(model), torch.no_grad():
            warnings.simplefilter("always")
            call_model(model, example)
        _echo_warnings(caught)
    except Exception as exc:  # noqa: BLE001  (the user's forward: any error is a bad input)
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        ints = f" and its dtype (--input-dtype {input_dtype} gave integer ids; leave it out for floats)"
        ids = {"float32": " (with --input-dtype int64 for token ids)", "float64": ""}.get(input_dtype, ints)
        several = ("; a forward of several tensors takes their shapes separated by ';', quoted: "
                   "'2,7,32;2,5,32'") if isinstance(exc, TypeError) else ""
        raise InitlabError(f"--input-shape {input_shape}: the model's forward failed on an input of shape "
                           f"{tuple(shape)} ({type(exc).__name__}: {text}): pass the shape of the model's "
                           f"input{ids}{several}") from None


def _probe_target(target: str, input_shape: str | None, input_dtype: str, seed: int, gen):
    """The model ``FILE.py:FUNCTION`` builds (torch's global RNG seeded with ``seed`` meanwhile, then
    restored), and its inputs: of ``input_shape`` (N(0, 1), or token ids below every Embedding's
    size), else :func:`initlab.graph.example_inputs` with their floating tensors redrawn from
    ``gen`` (integer ones — token ids, masks — as built)."""
    import torch

    from initlab.graph import example_inputs

    shape = _shapes(input_shape, input_dtype)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _build_model(target)
    name = f"{target} ({type(model).__name__}, {_n_params(model)} parameters)"
    if shape is None:
        try:
            built, how = example_inputs(model, batch=_PROBE_BATCH)
        except InitlabError as exc:
            why = str(exc).removesuffix("; pass example_inputs")  # the library's remedy; the CLI's follows
            raise InitlabError(f"{why}; pass --input-shape (and --input-dtype for token ids)") from None
        floats = any(t.is_floating_point() for t in _tensors(built))
        return model, _redraw_floats(built, gen), f"{name}, inputs {how}" + (" (redrawn)" if floats else "")
    inputs = _make_inputs(model, shape, input_shape, input_dtype, gen)
    shown = " and ".join("x".join(map(str, one)) for one in (shape if isinstance(shape, list) else [shape]))
    return model, inputs, f"{name}, inputs {input_dtype} {shown}"


def _shapes(input_shape: str | None, input_dtype: str = "float32"):
    """``--input-shape`` parsed: ``None``; one shape (a tuple); or several (a list of tuples: the
    forward's positional inputs, ``"2,7,32;2,5,32"``). A token-id ``--input-dtype`` needs a shape."""
    from initlab.cli_helpers import parse_shapes

    if input_shape is None:
        if input_dtype != "float32":
            raise InitlabError(f"--input-dtype {input_dtype} needs --input-shape: pass e.g. "
                               "--input-shape 2,16")
        return None
    shapes = parse_shapes(input_shape)
    return shapes[0] if len(shapes) == 1 else shapes


def _make_inputs(model, shape, input_shape: str, input_dtype: str, gen):
    """The example input(s) of ``shape`` (a tuple, or a list of them: a tuple of tensors, the forward's
    positional inputs): N(0, 1) floats, or token ids below every Embedding's ``num_embeddings``."""
    import torch

    dtype = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64, "long": torch.int64,
             "int32": torch.int32}[input_dtype]

    def one(s):
        if dtype.is_floating_point:
            return torch.randn(s, generator=gen, dtype=dtype)
        high = min([m.num_embeddings for m in model.modules()  # token ids: valid for every Embedding
                    if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag))] or [2])
        return torch.randint(0, max(high, 1), s, generator=gen, dtype=dtype)

    try:
        return tuple(one(s) for s in shape) if isinstance(shape, list) else one(shape)
    except (RuntimeError, OverflowError, ValueError, TypeError) as exc:
        raise InitlabError(f"--input-shape {input_shape}: cannot make an input of shape {shape} "
                           f"({str(exc).strip().splitlines()[0]}): pass a smaller shape") from None


def _tensors(obj) -> list:
    """Every tensor in ``obj`` (tensors, lists, tuples, dicts)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return [obj]
    items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()
    return [t for o in items for t in _tensors(o)]


def _redraw_floats(obj, gen):
    """``obj`` with every floating tensor replaced by N(0, 1) draws from ``gen`` (same shape, dtype,
    device); containers rebuilt, anything else as is."""
    import torch

    if isinstance(obj, torch.Tensor):
        if not obj.is_floating_point():
            return obj
        return torch.randn(obj.shape, generator=gen).to(device=obj.device, dtype=obj.dtype)
    if isinstance(obj, dict):
        return {k: _redraw_floats(v, gen) for k, v in obj.items()}
    if type(obj) in (list, tuple):
        return type(obj)(_redraw_floats(v, gen) for v in obj)
    return obj


# ---- phase (engineer "theory") --------------------------------------------------------------


def _number_list(text: str | None, name: str, kind: type) -> tuple | None:
    """Parse ``"1,2,4"`` (commas and/or spaces) into a tuple of ``kind``; ``None`` stays ``None``.
    An empty item (``"4,,8"``, a trailing comma) is refused rather than skipped."""
    import re

    if text is None:
        return None
    items = re.split(r"\s*,\s*|\s+", text.strip()) if text.strip() else []
    if "" in items:
        raise click.BadParameter(f"{text!r} has an empty item: give values separated by commas (e.g. 1,2,4)",
                                 param_hint=name)
    try:
        values = tuple(kind(v) for v in items)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a list of {kind.__name__}s (e.g. 1,2,4)",
                                 param_hint=name) from None
    if not values:
        raise click.BadParameter("give at least one value (e.g. 1,2,4)", param_hint=name)
    return values


@cli.command("phase")
@click.option("--activation", type=_LazyChoice(_phase_activations), default="tanh", show_default=True,
              help="Activation of every hidden layer.")
@click.option("--param", type=float, default=None, help="Activation parameter (e.g. leaky_relu slope).")
@click.option("--depths", default=None, help="Depths (hidden layers), comma-separated, e.g. 4,8,16,32.")
@click.option("--sigma-w2", "sigma_w2", default=None,
              help="Weight variances x fan_in, comma-separated; the critical one is always added.")
@click.option("--sigma-b2", type=float, default=None,
              help="Bias variance of every layer [default: 0.05; 0 for relu, leaky_relu and linear, "
                   "whose critical point exists only at 0].")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="SGD steps per network.")
@click.option("--width", type=click.IntRange(min=1), default=None, help="Hidden width.")
@click.option("--lr", type=float, default=None, help="SGD learning rate.")
@click.option("--dataset", default="digits", show_default=True, help="Data set name or .npz/.csv path.")
@click.option("--data-dir", type=click.Path(), default=None, help="Directory with IDX files (mnist, ...).")
@click.option("--out", default="initlab-phase", show_default=True, type=click.Path(),
              help="Report directory.")
@click.option("--quick", is_flag=True, help="Fast run (~20 s): sigma_w2 in {1, critical, 4}, depths 10-30.")
@_seed_option("Seed of every network.")
@click.option("--force", is_flag=True, help="Replace --out even if it is not an initlab phase report.")
@_threads_option
@click.option("--ray", "on_ray", is_flag=True,
              help="Train the grid's networks as Ray tasks on this machine's cores (pip install "
                   "'initlab[sweep]'); the numbers are the same.")
@click.option("--address", default=None,
              help="Train them on the Ray cluster at this address (implies --ray).")
@click.option("--cpus", type=click.IntRange(min=1), default=None, help="With --ray: CPUs of the local Ray.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
def phase_command(activation: str, param: float | None, depths: str | None, sigma_w2: str | None,
                  sigma_b2: float | None, steps: int | None, width: int | None, lr: float | None,
                  dataset: str, data_dir: str | None, out: str, quick: bool, seed: int, force: bool,
                  threads: int, on_ray: bool, address: str | None, cpus: int | None, progress: bool) -> None:
    """Trainability phase diagram (sigma_w^2 x depth) against the mean-field 6 xi_c, and the
    Jacobian spectrum at criticality (Gaussian vs orthogonal weights)."""
    import dataclasses
    import functools
    import math

    from initlab.experiments.phase import PhaseConfig, run_phase
    from initlab.report.phase_report import check_phase_out_dir, write_phase_report
    from initlab.sweep.engine import map_cells

    out_path = check_phase_out_dir(out, force=force)  # refuse before any work
    if sigma_b2 is None and activation in ("relu", "leaky_relu", "prelu", "linear", "identity"):
        sigma_b2 = 0.0  # positively homogeneous: critical only without bias variance
    overrides = {"activation": activation, "param": param, "sigma_b2": sigma_b2, "seed": seed,
                 "threads": threads, "dataset": dataset, "data_dir": data_dir,
                 "depths": _number_list(depths, "--depths", int),
                 "sigma_w2s": _number_list(sigma_w2, "--sigma-w2", float),
                 "steps": steps, "width": width, "lr": lr}
    base = PhaseConfig.quick() if quick else PhaseConfig()
    config = dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
    if cpus is not None and not (on_ray or address):
        raise InitlabError(f"--cpus {cpus} sets the CPUs of Ray: add --ray")
    runner = "ray" if on_ray or address else "serial"  # the sweep engine: one loop for every grid
    cells = functools.partial(map_cells, runner=runner, address=address, cpus=cpus, progress=progress,
                              desc="initlab phase")
    with _SigtermAsInterrupt():  # `kill` cleans up like Ctrl-C: no temporary directory is left
        result = run_phase(config.validate(), map_cells=cells)
        meta = {"config": result.config_dict(), "dataset": result.dataset,
                "environment": result.environment,
                "timings": {k: round(v, 3) for k, v in result.timings.items()}}
        write_phase_report(result.records, out_path, meta=meta, force=force,
                           notify=lambda message: click.echo(message, err=True))
    cp = result.critical
    q_text = f"q*={cp.q_star:.4g}" if not math.isnan(cp.q_star) else "every q is a fixed point"
    click.echo(f"initlab phase: {config.activation}, sigma_b2={config.sigma_b2:g}; critical sigma_w2="
               f"{cp.sigma_w2:.4g} ({q_text}); {result.dataset.get('name')}, "
               f"{config.steps} SGD steps, seed {config.seed}, {result.environment['threads']} thread(s)")
    theory_depth = {r["sigma_w2"]: r["value"] for r in result.select("trainable_depth_theory")}
    click.echo(f"{'sigma_w2':>9}  {'6 xi_c':>8}  {'trainable depth (measured)':>26}")
    for w, d in sorted(result.trainable_depth().items()):
        t = theory_depth.get(w, math.nan)
        mark = "  <- critical" if w == cp.sigma_w2 else ""
        t_text = "inf" if math.isinf(t) else "n/a" if math.isnan(t) else f"{t:.1f}"
        click.echo(f"{w:>9.4g}  {t_text:>8}  {int(d):>26}{mark}")
    missing = {r["sigma_w2"]: r["theory_error"] for r in result.select("xi_c") if r.get("theory_error")}
    if missing:
        click.echo("note: mean-field theory unavailable at sigma_w2 = "
                   + ", ".join(f"{w:.4g}" for w in sorted(missing)) + f" ({next(iter(missing.values()))})")
    spread = result.jacobian_spread()
    click.echo("Jacobian singular values p90/p10 at criticality (median over seeds): "
               + ", ".join(f"{k} {v:.3g}" for k, v in spread.items()))
    click.echo(f"wrote {out_path / 'index.html'} ({len(result.records)} records, "
               f"{result.timings['total']:.1f} s)")


# ---- sweep (engineer "sweep"): the commands live in initlab.cli_sweep -------------------------

cli.add_command(sweep_group)
cli.add_command(reproduce_command)  # initlab reproduce: the command lives in initlab.cli_reproduce


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``initlab`` console script; returns the exit status."""
    try:
        status = cli.main(args=argv, prog_name="initlab", standalone_mode=False)
        if isinstance(status, int) and not isinstance(status, bool) and status:  # ctx.exit(N)
            return status
    except click.exceptions.Abort as exc:  # click turns KeyboardInterrupt into Abort
        if isinstance(exc.__cause__, Terminated):
            click.echo("initlab: terminated", err=True)
            return EXIT_SIGTERM
        click.echo("initlab: aborted", err=True)
        return EXIT_SIGINT
    except click.exceptions.ClickException as exc:  # bad option, missing argument, ...
        click.echo(f"initlab: error: {exc.format_message()}", err=True)
        return 2
    except USER_ERRORS as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, KeyError):
            message = str(exc.args[0]) if exc.args else "KeyError"
        click.echo(f"initlab: error: {message}", err=True)
        return 2
    except Terminated:
        click.echo("initlab: terminated", err=True)
        return EXIT_SIGTERM
    except KeyboardInterrupt:
        click.echo("initlab: interrupted", err=True)
        return EXIT_SIGINT
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
