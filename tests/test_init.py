"""Tests of initlab.init, the torch front end (drop-in for torch.nn.init).

Statistical tests are seeded and can fail: KS p > 1e-4 on >= 10^4 samples; sample std within
5 standard errors (sigma / sqrt(2 n)) of the formula, recomputed here. Exact algebra uses
atol=1e-6, rtol=0 (float32).
"""

from __future__ import annotations

import inspect
import math
import re
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.init as tinit
from scipy import stats

import initlab.errors
import initlab.gains
from initlab import init as I  # noqa: N812 - drop-in spelling
from initlab import schemes
from initlab.fans import Fans

FLOAT_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
KERAS_TN = 0.87962566103423978  # Keras' literal constant (test_schemes checks it against scipy)
TN2 = float(stats.truncnorm.std(-2.0, 2.0))  # std of N(0, 1) truncated to [-2, 2]


def gen(seed: int = 1234) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def torch_fans(shape) -> tuple[int, int]:
    """torch's convention, written out: fan_in = shape[1] * rf, fan_out = shape[0] * rf."""
    rf = math.prod(shape[2:])
    return shape[1] * rf, shape[0] * rf


# ---- the contract table: scheme x shape x dtype ----------------------------------------------------

TORCH_ZERO_ELEMENT = "Initializing zero-element tensors is a no-op"  # torch's text (and its tests' regex)

# name -> (call(tensor, generator), min_dims, allowed dims or None)
SCHEMES = {
    "uniform_": (lambda t, g: I.uniform_(t, -0.5, 0.5, generator=g), 0, None),
    "normal_": (lambda t, g: I.normal_(t, 0.0, 0.1, generator=g), 0, None),
    "trunc_normal_": (lambda t, g: I.trunc_normal_(t, std=0.1, a=-0.2, b=0.2, generator=g), 0, None),
    "constant_": (lambda t, g: I.constant_(t, 0.25), 0, None),
    "ones_": (lambda t, g: I.ones_(t), 0, None),
    "zeros_": (lambda t, g: I.zeros_(t), 0, None),
    "eye_": (lambda t, g: I.eye_(t), 0, (2,)),
    "dirac_": (lambda t, g: I.dirac_(t), 0, (3, 4, 5)),
    "xavier_uniform_": (lambda t, g: I.xavier_uniform_(t, generator=g), 2, None),
    "xavier_normal_": (lambda t, g: I.xavier_normal_(t, generator=g), 2, None),
    "kaiming_uniform_": (lambda t, g: I.kaiming_uniform_(t, generator=g), 2, None),
    "kaiming_normal_": (lambda t, g: I.kaiming_normal_(t, nonlinearity="relu", generator=g), 2, None),
    "orthogonal_": (lambda t, g: I.orthogonal_(t, generator=g), 2, None),
    "sparse_": (lambda t, g: I.sparse_(t, 0.2, generator=g), 0, (2,)),
    "lecun_normal_": (lambda t, g: I.lecun_normal_(t, generator=g), 2, None),
    "lecun_uniform_": (lambda t, g: I.lecun_uniform_(t, generator=g), 2, None),
    "glorot_truncated_normal_": (lambda t, g: I.glorot_truncated_normal_(t, generator=g), 2, None),
    "he_truncated_normal_": (lambda t, g: I.he_truncated_normal_(t, generator=g), 2, None),
    "lecun_truncated_normal_": (lambda t, g: I.lecun_truncated_normal_(t, generator=g), 2, None),
    "variance_scaling_": (lambda t, g: I.variance_scaling_(t, 2.0, "fan_avg", generator=g), 2, None),
    "delta_orthogonal_": (lambda t, g: I.delta_orthogonal_(t, generator=g), 0, (3, 4, 5)),
    # rows-mirrored only, so the odd widths of the table's 2-D shapes are allowed (dim 1 unmirrored);
    # the other mirror modes and the odd-width errors are in tests/test_looks_linear.py
    "looks_linear_": (lambda t, g: I.looks_linear_(t, mirror_cols=False, generator=g), 0, (2,)),
    "apply_spec_(Orthogonal)": (lambda t, g: I.apply_spec_(t, schemes.Orthogonal(2.0), generator=g), 2, None),
    "apply_spec_(Normal)": (lambda t, g: I.apply_spec_(t, schemes.Normal(0.3), generator=g), 0, None),
    "apply_spec_(LooksLinear)": (
        lambda t, g: I.apply_spec_(t, schemes.LooksLinear(1.5, mirror_cols=False), generator=g), 0, (2,)
    ),
    # rows-mirrored (dim 0 of the table's conv shapes is even); tests/test_conv_isometry.py has the rest
    "delta_looks_linear_": (
        lambda t, g: I.delta_looks_linear_(t, mirror_cols=False, generator=g), 0, (3, 4, 5)
    ),
    "apply_spec_(Delta)": (
        lambda t, g: I.apply_spec_(t, schemes.Delta(schemes.Orthogonal(1.5)), generator=g), 0, (3, 4, 5)
    ),
}
RANDOM = [
    n for n in SCHEMES if n not in ("constant_", "ones_", "zeros_", "eye_", "dirac_")
]
SHAPES = [(), (7,), (6, 5), (6, 4, 3), (8, 4, 3, 3)]


def _allowed(name: str, ndim: int) -> bool:
    _, min_dims, dims = SCHEMES[name]
    return ndim in dims if dims is not None else ndim >= min_dims


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", list(SCHEMES))
def test_contract_shape_dtype_and_dims(name, shape, dtype):
    call = SCHEMES[name][0]
    t = torch.full(shape, float("nan"), dtype=dtype)
    if _allowed(name, len(shape)):
        out = call(t, gen())
        assert out is t
        assert out.shape == torch.Size(shape) and out.dtype == dtype
        assert torch.isfinite(out.float()).all()
    else:
        with pytest.raises(ValueError, match=rf"needs a tensor with .*dimensions.*got {len(shape)} "):
            call(t, gen())


INT_DTYPES = [torch.int64, torch.int32, torch.uint8, torch.bool]


@pytest.mark.parametrize("dtype", INT_DTYPES, ids=str)
@pytest.mark.parametrize("name", RANDOM)
def test_contract_random_initializers_refuse_integer_and_bool(name, dtype):
    """A TypeError naming the dtype, and a NotImplementedError (RuntimeError) as torch raises."""
    t = torch.zeros(6, 4, 3, dtype=dtype) if name == "delta_orthogonal_" else torch.zeros(6, 5, dtype=dtype)
    before = t.clone()
    with pytest.raises(TypeError, match=str(dtype).replace("torch.", "")) as info:
        SCHEMES[name][0](t, gen())
    assert isinstance(info.value, NotImplementedError) and isinstance(info.value, I.InitDtypeError)
    assert torch.equal(t, before)


# the deterministic fillers on integer and bool tensors: torch code that works keeps working
FILLERS = {
    "zeros_": ((5, 4), ()),
    "ones_": ((5, 4), ()),
    "constant_": ((5, 4), (3,)),
    "constant_(2.7)": ((5, 4), (2.7,)),  # Tensor.fill_ casts: 2 in an int tensor, True in a bool one
    "eye_": ((3, 5), ()),
    "dirac_": ((4, 2, 3, 3), (2,)),
}


@pytest.mark.parametrize("dtype", INT_DTYPES, ids=str)
@pytest.mark.parametrize("case", list(FILLERS))
def test_deterministic_fillers_fill_integer_and_bool_tensors_as_torch(case, dtype):
    shape, args = FILLERS[case]
    name = case.split("(")[0]
    ours, theirs = torch.full(shape, 7, dtype=dtype), torch.full(shape, 7, dtype=dtype)
    assert getattr(I, name)(ours, *args) is ours
    getattr(tinit, name)(theirs, *args)
    assert ours.dtype == dtype and torch.equal(ours, theirs)


@pytest.mark.parametrize("name", list(SCHEMES))
def test_contract_zero_element_warns_and_returns_unchanged(name):
    _, min_dims, dims = SCHEMES[name]
    ndim = dims[0] if dims else max(min_dims, 1)
    shape = (0,) + (4,) * (ndim - 1)
    t = torch.empty(shape)
    with pytest.warns(UserWarning, match=TORCH_ZERO_ELEMENT) as record:
        out = SCHEMES[name][0](t, gen())
    assert out is t and out.shape == torch.Size(shape)
    assert record[0].filename == __file__  # the warning points at the caller


def test_not_a_tensor_raises_type_error():
    with pytest.raises(TypeError, match="list"):
        I.normal_([1.0, 2.0])


# ---- deliberate differences from torch (the table in initlab.init's docstring) ---------------------


@pytest.mark.parametrize("name", ["kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "zeros_"])
def test_zero_element_warning_has_torchs_text(name):
    """torch's own test regex matches; torch really warns with it (kaiming_*); a filter written for
    torch's warning silences initlab's too."""
    with pytest.warns(UserWarning, match=TORCH_ZERO_ELEMENT):
        getattr(I, name)(torch.empty(0, 1))
    if name.startswith("kaiming"):
        with pytest.warns(UserWarning, match=TORCH_ZERO_ELEMENT):
            getattr(tinit, name)(torch.empty(0, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=TORCH_ZERO_ELEMENT)
        getattr(I, name)(torch.empty(0, 1))


def test_zero_element_warning_names_the_initializer_and_shape():
    with pytest.warns(UserWarning, match=re.escape(f"{TORCH_ZERO_ELEMENT} (orthogonal_ on shape (0, 3))")):
        I.orthogonal_(torch.empty(0, 3))


def test_zero_elements_with_too_few_dims_are_refused():
    """Documented difference: torch warns and returns here; the call is wrong at any size."""
    with pytest.warns(UserWarning, match=TORCH_ZERO_ELEMENT):
        tinit.kaiming_uniform_(torch.empty(0))
    with pytest.raises(ValueError, match="at least 2 dimensions, got 1"):
        I.kaiming_uniform_(torch.empty(0))


ARGUMENT_ERRORS = {  # torch raises RuntimeError on each
    "uniform_ a > b": lambda m: m.uniform_(torch.empty(4), 2.0, 1.0),
    "normal_ std < 0": lambda m: m.normal_(torch.empty(4), 0.0, -1.0),
    "sparse_ std < 0": lambda m: m.sparse_(torch.empty(4, 3), 0.5, std=-1.0),
    "trunc_normal_ a > b": lambda m: m.trunc_normal_(torch.empty(4), 0.0, 1.0, 2.0, 1.0),
}


@pytest.mark.parametrize("case", list(ARGUMENT_ERRORS))
def test_argument_errors_are_both_value_error_and_torchs_runtime_error(case):
    with pytest.raises(RuntimeError):
        ARGUMENT_ERRORS[case](tinit)
    for cls in (RuntimeError, ValueError, I.InitArgumentError, initlab.errors.InitlabError):
        with pytest.raises(cls):
            ARGUMENT_ERRORS[case](I)


TORCH_RANDOM = ["uniform_", "normal_", "trunc_normal_", "xavier_uniform_", "kaiming_normal_", "orthogonal_",
                "sparse_"]


@pytest.mark.parametrize("name", TORCH_RANDOM)
def test_random_initializers_on_ints_are_caught_by_torchs_except_clause(name):
    args = (0.5,) if name == "sparse_" else ()
    with pytest.raises(RuntimeError):
        getattr(tinit, name)(torch.zeros(3, 3, dtype=torch.int64), *args)
    with pytest.raises(RuntimeError, match="int64"):
        getattr(I, name)(torch.zeros(3, 3, dtype=torch.int64), *args)


def test_trunc_normal_degenerate_interval_fills_a_as_torch():
    ours = I.trunc_normal_(torch.empty(5), 0.0, 1.0, 0.5, 0.5, generator=gen())
    theirs = tinit.trunc_normal_(torch.empty(5), 0.0, 1.0, 0.5, 0.5, generator=gen())
    assert torch.equal(ours, theirs) and torch.equal(ours, torch.full((5,), 0.5))


def test_trunc_normal_std_not_positive_is_refused():
    """Documented: torch divides by zero for std = 0, and for std < 0 samples as if |std|."""
    with pytest.raises(ZeroDivisionError):
        tinit.trunc_normal_(torch.empty(4), 0.0, 0.0)
    tinit.trunc_normal_(torch.empty(4), 0.0, -1.0)  # torch accepts a negative std
    for std in (0.0, -1.0):
        with pytest.raises(I.InitArgumentError, match=re.escape(f"std={std!r} is invalid: pass std > 0")):
            I.trunc_normal_(torch.empty(4), 0.0, std)


@pytest.mark.parametrize("sparsity", [1.5, -0.25, 15])
def test_sparsity_outside_the_unit_interval_is_refused(sparsity):
    """Documented: torch zeroes every row for sparsity > 1 and slices from the end for < 0."""
    theirs = tinit.sparse_(torch.empty(4, 3), sparsity)
    zeros_per_column = 4 if sparsity > 1 else 4 - math.floor(-sparsity * 4)
    assert ((theirs == 0).sum(0) == zeros_per_column).all()
    with pytest.raises(ValueError, match=re.escape(f"sparsity={sparsity!r} is outside [0, 1]")):
        I.sparse_(torch.empty(4, 3), sparsity)


def test_not_a_tensor_is_a_type_error_where_torch_raises_attribute_error():
    with pytest.raises(AttributeError):
        tinit.zeros_([1.0])
    with pytest.raises(TypeError, match="got list"):
        I.zeros_([1.0])


def _table_cases(text: str, rule: str) -> list[str]:
    """The first-column entries of the differences table (RST in the docstring, Markdown in README)."""
    if rule == "rst":
        lines = text.splitlines()
        borders = [i for i, line in enumerate(lines) if re.fullmatch(r"=+( +=+)+", line)]
        width = lines[borders[0]].index(" ")
        body = lines[borders[1] + 1:borders[2]]
        return [line[:width].strip() for line in body if line[:width].strip()]
    return [row.split("|")[1].strip() for row in text.splitlines()
            if row.startswith("|") and not set(row) <= set("|-: ")][1:]


def test_differences_table_in_readme_is_the_docstrings():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Tensor initializers"):readme.index("### Fans and gains")]
    doc_cases = [c.replace("``", "`") for c in _table_cases(I.__doc__, "rst")]
    assert len(doc_cases) >= 10
    assert _table_cases(section, "md") == doc_cases


# ---- drop-in for torch.nn.init --------------------------------------------------------------------

TORCH_NAMES = [n for n in tinit.__all__ if n.endswith("_")] + ["calculate_gain"]


def test_every_torch_name_exists():
    missing = [n for n in tinit.__all__ if not hasattr(I, n)]
    assert missing == []


@pytest.mark.parametrize("name", TORCH_NAMES)
def test_signatures_match_torch(name):
    """Same parameter names, kinds and defaults as torch; initlab may only add keyword-only ones."""
    ours = list(inspect.signature(getattr(I, name)).parameters.values())
    theirs = list(inspect.signature(getattr(tinit, name)).parameters.values())
    assert [(p.name, p.kind, p.default) for p in ours[: len(theirs)]] == [
        (p.name, p.kind, p.default) for p in theirs
    ]
    assert all(p.kind is p.KEYWORD_ONLY and p.default is not p.empty for p in ours[len(theirs):])


def test_calculate_gain_is_initlab_gains_and_matches_torch():
    assert I.calculate_gain is initlab.gains.calculate_gain
    for name in ("linear", "conv2d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"):
        assert I.calculate_gain(name) == tinit.calculate_gain(name)
    assert I.calculate_gain("leaky_relu", 0.2) == tinit.calculate_gain("leaky_relu", 0.2)


def test_aliases_are_assignments():
    assert I.glorot_uniform_ is I.xavier_uniform_ and I.glorot_normal_ is I.xavier_normal_
    assert I.he_uniform_ is I.kaiming_uniform_ and I.he_normal_ is I.kaiming_normal_
    assert I.xavier_truncated_normal_ is I.glorot_truncated_normal_
    assert I.kaiming_truncated_normal_ is I.he_truncated_normal_


def test_deprecated_names_warn_like_torch():
    with pytest.warns(FutureWarning, match="normal_"):
        I.normal(torch.empty(2, 2))


# (name, args, kwargs, shape): every torch random initializer, on dense and conv shapes.
TORCH_CASES = [
    ("uniform_", (-0.3, 0.7), {}, (40, 30)),
    ("normal_", (0.5, 2.0), {}, (40, 30)),
    ("trunc_normal_", (0.0, 1.0, -2.0, 2.0), {}, (40, 30)),
    ("trunc_normal_", (0.1, 0.02, -0.3, 0.3), {}, (40, 30)),  # wide: torch's normal path
    ("trunc_normal_", (0.0, 1.0, 0.5, 1.0), {}, (40, 30)),  # narrow: torch's uniform path
    ("xavier_uniform_", (), {"gain": 1.7}, (40, 30)),
    ("xavier_uniform_", (), {}, (16, 8, 3, 3)),
    ("xavier_normal_", (), {"gain": 0.5}, (16, 8, 5)),
    ("kaiming_uniform_", (), {}, (40, 30)),
    ("kaiming_uniform_", (), {"a": math.sqrt(5)}, (16, 8, 3, 3)),  # nn.Linear / nn.Conv default
    ("kaiming_uniform_", (), {"mode": "fan_out", "nonlinearity": "relu"}, (16, 8, 3, 3)),
    ("kaiming_normal_", (), {"a": 0.2}, (40, 30)),
    ("kaiming_normal_", (), {"mode": "FAN_OUT", "nonlinearity": "tanh"}, (16, 8, 2, 2, 2)),
    ("orthogonal_", (), {}, (40, 30)),
    ("orthogonal_", (), {"gain": 2.0}, (8, 4, 3, 3)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("name,args,kwargs,shape", TORCH_CASES)
def test_same_bits_as_torch_for_the_same_generator(name, args, kwargs, shape, dtype):
    ours = getattr(I, name)(torch.empty(shape, dtype=dtype), *args, generator=gen(7), **kwargs)
    theirs = getattr(tinit, name)(torch.empty(shape, dtype=dtype), *args, generator=gen(7), **kwargs)
    assert torch.equal(ours, theirs)


def test_sparse_same_bits_as_torch_through_the_global_seed():
    torch.manual_seed(11)
    ours = I.sparse_(torch.empty(30, 12), 0.3)
    torch.manual_seed(11)
    theirs = tinit.sparse_(torch.empty(30, 12), 0.3)
    assert torch.equal(ours, theirs)


@pytest.fixture
def spy(monkeypatch):
    """Record the (args, kwargs) of every Tensor.uniform_/normal_ and nn.init.trunc_normal_ call,
    i.e. the bound or std an initializer actually hands to torch's sampler."""
    calls: list[tuple[str, tuple, dict]] = []
    for method in ("uniform_", "normal_"):
        original = getattr(torch.Tensor, method)

        def wrapper(self, *args, _m=method, _o=original, **kwargs):
            calls.append((_m, args, {k: v for k, v in kwargs.items() if k != "generator"}))
            return _o(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, wrapper)
    original_tn = tinit.trunc_normal_

    def tn(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
        calls.append(("trunc_normal_", (mean, std, a, b), {}))
        return original_tn(tensor, mean, std, a, b, generator=generator)

    monkeypatch.setattr(tinit, "trunc_normal_", tn)
    return calls


@pytest.mark.parametrize("name,args,kwargs,shape", [c for c in TORCH_CASES if c[0] != "orthogonal_"])
def test_std_and_bound_equal_torch_exactly(spy, name, args, kwargs, shape):
    getattr(tinit, name)(torch.empty(shape), *args, **kwargs)
    theirs = list(spy)
    spy.clear()
    getattr(I, name)(torch.empty(shape), *args, **kwargs)
    assert spy[0] == theirs[0]  # the first sampler call carries the bound / std


@pytest.mark.parametrize("name,args,kwargs,shape", TORCH_CASES + [("sparse_", (0.25,), {}, (30, 12))])
def test_same_bits_twice_and_generator_equals_global_seed(name, args, kwargs, shape):
    fn = getattr(I, name)
    torch.manual_seed(99)
    via_global = fn(torch.empty(shape), *args, **kwargs)
    first = fn(torch.empty(shape), *args, generator=gen(99), **kwargs)
    second = fn(torch.empty(shape), *args, generator=gen(99), **kwargs)
    assert torch.equal(first, second) and torch.equal(first, via_global)
    other = fn(torch.empty(shape), *args, generator=gen(100), **kwargs)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("name", RANDOM)
def test_new_schemes_same_bits_twice_and_generator_equals_global_seed(name):
    call, _, dims = SCHEMES[name]
    shape = (8, 4, 3) if dims == (3, 4, 5) else (12, 9)
    torch.manual_seed(5)
    via_global = call(torch.empty(shape), None)
    assert torch.equal(call(torch.empty(shape), gen(5)), via_global)
    assert torch.equal(call(torch.empty(shape), gen(5)), via_global)


def test_generator_does_not_touch_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    for name in RANDOM:
        call, _, dims = SCHEMES[name]
        call(torch.empty((8, 4, 3) if dims == (3, 4, 5) else (12, 9)), gen())
    assert torch.equal(torch.rand(3), expected)


def test_parameter_filled_in_place_without_autograd_history():
    lin = torch.nn.Linear(20, 10)
    out = I.kaiming_normal_(lin.weight, generator=gen())
    assert out is lin.weight and out.requires_grad and out.grad_fn is None


def test_works_as_torch_in_module_code():
    """``from initlab import init`` replaces ``import torch.nn.init as init`` unchanged."""

    def reset(m, init):
        init.kaiming_uniform_(m.weight, a=math.sqrt(5))
        fan_in, _ = init._calculate_fan_in_and_fan_out(m.weight)
        init.uniform_(m.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    a, b = torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(3, 8, 3)
    torch.manual_seed(3)
    reset(a, tinit)
    torch.manual_seed(3)
    reset(b, I)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


# ---- distributions: KS and std ------------------------------------------------------------------


def _ks(sample: torch.Tensor, cdf) -> float:
    return float(stats.kstest(sample.double().flatten().numpy(), cdf).pvalue)


def _sd_ok(sample: torch.Tensor, sigma: float) -> None:
    n = sample.numel()
    se = sigma / math.sqrt(2 * n)
    assert abs(float(sample.double().std()) - sigma) < 5 * se, (float(sample.double().std()), sigma)


SHAPE = (200, 100)  # 2 * 10^4 samples; fan_in 100, fan_out 200
CONV = (64, 32, 3, 3)  # fan_in 288, fan_out 576, 18432 samples


def _dist_cases():
    fi, fo = torch_fans(SHAPE)
    cfi, cfo = torch_fans(CONV)
    relu = math.sqrt(2.0)
    u = stats.uniform
    cases = [
        ("uniform_", SHAPE, lambda t, g: I.uniform_(t, -0.3, 0.7, generator=g), u(-0.3, 1.0)),
        ("normal_", SHAPE, lambda t, g: I.normal_(t, 0.5, 2.0, generator=g), stats.norm(0.5, 2.0)),
        ("trunc_normal_", SHAPE, lambda t, g: I.trunc_normal_(t, generator=g), stats.truncnorm(-2, 2)),
        ("trunc_normal_(asym)", SHAPE, lambda t, g: I.trunc_normal_(t, 0.1, 0.5, -0.2, 1.5, generator=g),
         stats.truncnorm((-0.2 - 0.1) / 0.5, (1.5 - 0.1) / 0.5, loc=0.1, scale=0.5)),
        ("trunc_normal_(tail)", SHAPE, lambda t, g: I.trunc_normal_(t, 0.0, 1.0, 1.0, 3.0, generator=g),
         stats.truncnorm(1.0, 3.0)),
        ("xavier_uniform_", SHAPE, lambda t, g: I.xavier_uniform_(t, 1.5, generator=g),
         u(-1.5 * math.sqrt(6 / (fi + fo)), 3 * math.sqrt(6 / (fi + fo)))),
        ("xavier_normal_", CONV, lambda t, g: I.xavier_normal_(t, generator=g),
         stats.norm(0, math.sqrt(2 / (cfi + cfo)))),
        ("kaiming_uniform_", CONV, lambda t, g: I.kaiming_uniform_(t, generator=g),
         u(-relu * math.sqrt(3 / cfi), 2 * relu * math.sqrt(3 / cfi))),
        ("kaiming_normal_", SHAPE, lambda t, g: I.kaiming_normal_(t, mode="fan_out", generator=g),
         stats.norm(0, relu / math.sqrt(fo))),
        ("lecun_normal_", SHAPE, lambda t, g: I.lecun_normal_(t, generator=g),
         stats.norm(0, 1 / math.sqrt(fi))),
        ("lecun_uniform_", CONV, lambda t, g: I.lecun_uniform_(t, generator=g),
         u(-math.sqrt(3 / cfi), 2 * math.sqrt(3 / cfi))),
        ("glorot_truncated_normal_", SHAPE, lambda t, g: I.glorot_truncated_normal_(t, generator=g),
         stats.truncnorm(-2, 2, scale=math.sqrt(2 / (fi + fo)) / TN2)),
        ("he_truncated_normal_", CONV,
         lambda t, g: I.he_truncated_normal_(t, nonlinearity="relu", generator=g),
         stats.truncnorm(-2, 2, scale=relu / math.sqrt(cfi) / TN2)),
        ("lecun_truncated_normal_", SHAPE, lambda t, g: I.lecun_truncated_normal_(t, 2.0, generator=g),
         stats.truncnorm(-2, 2, scale=2.0 / math.sqrt(fi) / TN2)),
        ("variance_scaling_(normal, depthwise)", (2048, 1, 3, 3),
         lambda t, g: I.variance_scaling_(t, 2.0, "fan_in", "normal", groups=2048, generator=g),
         stats.norm(0, math.sqrt(2.0 / 9))),
        ("variance_scaling_(uniform, transposed)", (32, 64, 3, 3),  # ConvTranspose2d(32, 64, 3)
         lambda t, g: I.variance_scaling_(t, 1.0, "fan_geo_avg", "uniform", transposed=True, generator=g),
         u(-math.sqrt(3 / math.sqrt(288 * 576)), 2 * math.sqrt(3 / math.sqrt(288 * 576)))),
        ("variance_scaling_(truncated, packed)", (1536, 512),
         lambda t, g: I.variance_scaling_(t, 1.0, "fan_avg", chunks=3, generator=g),
         stats.truncnorm(-2, 2, scale=math.sqrt(2 / 1024) / TN2)),
        ("variance_scaling_(keras layout)", (3, 3, 32, 64),
         lambda t, g: I.variance_scaling_(t, 2.0, "fan_out", "normal", layout="keras", generator=g),
         stats.norm(0, math.sqrt(2.0 / (9 * 64)))),
        ("apply_spec_(Uniform)", SHAPE,
         lambda t, g: I.apply_spec_(t, schemes.Uniform(-1.0, 3.0), generator=g),
         u(-1.0, 4.0)),
        ("apply_spec_(Normal)", SHAPE,
         lambda t, g: I.apply_spec_(t, schemes.Normal(0.2, 1.0), generator=g),
         stats.norm(1.0, 0.2)),
        ("apply_spec_(TruncatedNormal)", SHAPE,
         lambda t, g: I.apply_spec_(t, schemes.TruncatedNormal(0.2, 0.0, -0.1, 0.3), generator=g),
         stats.truncnorm(-0.5, 1.5, scale=0.2)),
    ]
    return cases


DIST_CASES = _dist_cases()


@pytest.mark.parametrize("case", DIST_CASES, ids=[c[0] for c in DIST_CASES])
def test_distribution_ks_and_std(case):
    _, shape, call, dist = case
    w = call(torch.empty(shape, dtype=torch.float64), gen(2024))
    assert w.numel() >= 10_000
    assert _ks(w, dist.cdf) > 1e-4
    _sd_ok(w, float(dist.std()))
    assert abs(float(w.mean()) - dist.mean()) < 5 * dist.std() / math.sqrt(w.numel())


def test_sparse_zeros_per_column_and_nonzeros_normal():
    rows, cols, sparsity, std = 100, 200, 0.35, 0.05
    w = I.sparse_(torch.empty(rows, cols, dtype=torch.float64), sparsity, std, generator=gen())
    zeros = (w == 0).sum(dim=0)
    assert torch.all(zeros == math.ceil(sparsity * rows))
    nonzero = w[w != 0]
    assert nonzero.numel() >= 10_000
    assert _ks(nonzero, stats.norm(0, std).cdf) > 1e-4
    _sd_ok(nonzero, std)


def _haar_entry_cdf(n: int):
    """An entry of a Haar-random n x n orthogonal matrix: (x + 1) / 2 ~ Beta((n-1)/2, (n-1)/2)."""
    beta = stats.beta((n - 1) / 2, (n - 1) / 2)
    return lambda x: beta.cdf((x + 1) / 2)


def test_orthogonal_is_haar_distributed():
    """Entry (0, 0) of 10^4 independent 4 x 4 blocks (packed, chunks=) against its exact law;
    without the sign correction this fails."""
    n, blocks = 4, 10_000
    w = I.orthogonal_(torch.empty(n * blocks, n, dtype=torch.float64), generator=gen(), chunks=blocks)
    first = w.view(blocks, n, n)[:, 0, 0]
    assert _ks(first, _haar_entry_cdf(n)) > 1e-4
    _sd_ok(first, 1 / math.sqrt(n))


def test_delta_orthogonal_centre_is_haar_distributed():
    n, blocks = 3, 10_000
    w = I.apply_spec_(
        torch.empty(n * blocks, n, 3), schemes.DeltaOrthogonal(), generator=gen(), chunks=blocks
    )
    first = w.view(blocks, n, n, 3)[:, 0, 0, 1]
    assert _ks(first, _haar_entry_cdf(n)) > 1e-4


# ---- orthogonality -----------------------------------------------------------------------------


def _gram_error(w: torch.Tensor, gain: float) -> float:
    m = w.reshape(w.shape[0], -1).double()
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    return float((gram - gain**2 * torch.eye(gram.shape[0], dtype=torch.float64)).abs().max())


@pytest.mark.parametrize(
    "shape", [(16, 48), (48, 16), (32, 32), (64, 32), (16, 8, 3, 3), (8, 16, 3)], ids=str
)
@pytest.mark.parametrize("gain", [1.0, math.sqrt(2.0)])
def test_orthogonal_exact_float32_and_float64(shape, gain):
    """W W^T = gain^2 I to atol 1e-6 * gain^2 (float32; i.e. W / gain orthogonal to 1e-6), 1e-12 (float64)."""
    for seed in range(3):
        w32 = I.orthogonal_(torch.empty(shape), gain, generator=gen(seed))
        assert _gram_error(w32, gain) <= 1e-6 * gain**2
        w64 = I.orthogonal_(torch.empty(shape, dtype=torch.float64), gain, generator=gen(seed))
        assert _gram_error(w64, gain) <= 1e-12 * gain**2


@pytest.mark.parametrize("dtype,u", [(torch.bfloat16, 2.0**-9), (torch.float16, 2.0**-11)], ids=str)
def test_orthogonal_16_bit_is_float32_qr_then_cast(dtype, u):
    """A 16-bit orthogonal matrix is the float32 one rounded once, so each entry has relative error
    <= u (unit roundoff: 2^-9 bf16, 2^-11 fp16) and every Gram entry is off by at most
    (2u + u^2) * gain^2 (Cauchy-Schwarz); we allow 2 * (2u + u^2) * gain^2."""
    gain = 1.5
    w16 = I.orthogonal_(torch.empty(24, 40, dtype=dtype), gain, generator=gen(3))
    w32 = I.orthogonal_(torch.empty(24, 40), gain, generator=gen(3))
    assert w16.dtype == dtype and torch.equal(w16, w32.to(dtype))
    assert _gram_error(w16, gain) <= 2 * (2 * u + u * u) * gain**2


def test_orthogonal_non_contiguous_and_meta():
    base = torch.empty(30, 20)
    view = base.t()  # (20, 30), not contiguous: torch's view_as would fail here
    I.orthogonal_(view, generator=gen())
    assert _gram_error(view, 1.0) <= 1e-6
    meta = torch.empty(5, 4, device="meta")
    assert I.orthogonal_(meta) is meta


def test_orthogonal_chunks_per_gate():
    hidden = 16
    w = I.orthogonal_(torch.empty(4 * hidden, hidden), generator=gen(), chunks=4)  # LSTM weight_hh
    gates = w.split(hidden)
    for gate in gates:
        assert _gram_error(gate, 1.0) <= 1e-6
    assert not torch.equal(gates[0], gates[1])
    with pytest.raises(ValueError, match="chunks=3 does not divide dim 0"):
        I.orthogonal_(torch.empty(64, 16), chunks=3)


def test_delta_orthogonal_structure():
    gain = 2.0
    w = I.delta_orthogonal_(torch.empty(8, 4, 4, 5), gain, generator=gen())
    centre = w[:, :, 2, 2]  # k // 2 for even and odd kernels, as dirac_
    assert _gram_error(centre.T.contiguous(), gain) <= 1e-6 * gain**2  # H^T H = gain^2 I (in x in)
    mask = torch.ones_like(w, dtype=torch.bool)
    mask[:, :, 2, 2] = False
    assert torch.count_nonzero(w[mask]) == 0
    with pytest.raises(ValueError, match=r"out_channels >= in_channels.*4 < 8"):
        I.delta_orthogonal_(torch.empty(4, 8, 3, 3))
    bf = I.delta_orthogonal_(torch.empty(8, 4, 3, dtype=torch.bfloat16), generator=gen())
    assert bf.dtype == torch.bfloat16


# ---- torch's std / bound, and Keras's documented formulas ------------------------------------------

KERAS_SHAPES = {"dense": (64, 48), "conv": (32, 16, 3, 5)}  # torch layout (out, in, *k)


def _keras_fans(shape):
    """Keras computes fans on its kernel layout (*k, in, out): fan_in = in * rf, fan_out = out * rf."""
    keras_kernel = (*shape[2:], shape[1], shape[0])
    rf = math.prod(keras_kernel[:-2])
    return keras_kernel[-2] * rf, keras_kernel[-1] * rf


@pytest.mark.parametrize("kind", list(KERAS_SHAPES))
def test_glorot_he_lecun_equal_keras_formulas(spy, kind):
    shape = KERAS_SHAPES[kind]
    fan_in, fan_out = _keras_fans(shape)
    expect = {
        # Keras GlorotUniform / HeUniform / LecunUniform: U(-limit, limit)
        "glorot_uniform_": ("uniform_", math.sqrt(6 / (fan_in + fan_out))),
        "he_uniform_": ("uniform_", math.sqrt(6 / fan_in)),
        "lecun_uniform_": ("uniform_", math.sqrt(3 / fan_in)),
        # Keras GlorotNormal / HeNormal / LecunNormal: truncated normal, stddev = sqrt(scale/n)/.8796...
        "glorot_truncated_normal_": ("trunc_normal_", math.sqrt(2 / (fan_in + fan_out)) / KERAS_TN),
        "he_truncated_normal_": ("trunc_normal_", math.sqrt(2 / fan_in) / KERAS_TN),
        "lecun_truncated_normal_": ("trunc_normal_", math.sqrt(1 / fan_in) / KERAS_TN),
    }
    for name, (sampler, value) in expect.items():
        spy.clear()
        getattr(I, name)(torch.empty(shape))
        method, args, _ = spy[0]
        assert method == sampler
        if sampler == "uniform_":
            assert args[0] == pytest.approx(-value, rel=1e-12) and args[1] == pytest.approx(value, rel=1e-12)
        else:  # truncated at 2 stddev, mean 0
            mean, std, a, b = args
            assert mean == 0 and std == pytest.approx(value, rel=1e-12)
            assert a == pytest.approx(-2 * value, rel=1e-12) and b == pytest.approx(2 * value, rel=1e-12)


def test_variance_scaling_keras_layout_matches_keras(spy):
    """Keras VarianceScaling(scale=2, mode="fan_avg", distribution="uniform") on a (3, 3, 16, 32) kernel."""
    I.variance_scaling_(torch.empty(3, 3, 16, 32), 2.0, "fan_avg", "uniform", layout="keras")
    fan_in, fan_out = 3 * 3 * 16, 3 * 3 * 32
    limit = math.sqrt(3 * 2.0 / ((fan_in + fan_out) / 2))
    assert spy[0][1] == pytest.approx((-limit, limit), rel=1e-12)


def test_variance_scaling_keras_depthwise_glorot_uniform_limit(spy):
    """Keras GlorotUniform on a DepthwiseConv2D(3) kernel (3, 3, 64, 1), with its true fans: each
    output unit reads one input channel (fan_in = 3*3), each input unit feeds one output channel
    (fan_out = 3*3*1); limit = sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = 3 * 3, 3 * 3 * 1
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    I.variance_scaling_(torch.empty(3, 3, 64, 1), 1.0, "fan_avg", "uniform", layout="keras_depthwise")
    assert spy[-1][1] == pytest.approx((-limit, limit), rel=1e-12)
    # the same conv as a JAX kernel (*k, in/groups, out) with feature_group_count = groups = 64
    I.variance_scaling_(torch.empty(3, 3, 1, 64), 1.0, "fan_avg", "uniform", layout="jax", groups=64)
    assert spy[-1][1] == pytest.approx((-limit, limit), rel=1e-12)


@pytest.mark.parametrize(
    "name,spec_fn,kwargs",
    [
        ("xavier_uniform_", schemes.glorot_uniform, {"gain": 1.3}),
        ("xavier_normal_", schemes.glorot_normal, {"gain": 1.3}),
        ("kaiming_uniform_", schemes.he_uniform, {}),
        ("kaiming_normal_", schemes.he_normal, {}),
    ],
)
def test_torch_named_functions_agree_with_the_one_core(spy, name, spec_fn, kwargs):
    """torch's arithmetic (kept for identical bits) equals schemes.variance_scaling to 1e-12."""
    shape = (32, 16, 3, 3)
    getattr(I, name)(torch.empty(shape), **kwargs)
    fi, fo = torch_fans(shape)
    spec = spec_fn(Fans(fi, fo), **kwargs)
    method, args, kw = spy[0]
    got = args[1]
    want = spec.high if isinstance(spec, schemes.Uniform) else spec.std
    assert got == pytest.approx(want, rel=1e-12)


# ---- variance_scaling_ with true fans ---------------------------------------------------------------


def test_variance_scaling_true_fans(spy):
    # depthwise Conv2d(4, 4, 3, groups=4): fans (9, 9), not torch's (9, 36)
    I.variance_scaling_(torch.empty(4, 1, 3, 3), 1.0, "fan_out", "normal", groups=4)
    assert spy[-1][1][1] == pytest.approx(math.sqrt(1 / 9), rel=1e-12)
    # ConvTranspose2d(16, 64, 3): fan_in = 16 * 9
    I.variance_scaling_(torch.empty(16, 64, 3, 3), 2.0, "fan_in", "normal", transposed=True)
    assert spy[-1][1][1] == pytest.approx(math.sqrt(2 / 144), rel=1e-12)
    # MultiheadAttention(512, 8).in_proj_weight, 3 chunks: per-chunk Glorot sqrt(2 / 1024)
    I.variance_scaling_(torch.empty(1536, 512), 1.0, "fan_avg", "normal", chunks=3)
    assert spy[-1][1][1] == pytest.approx(math.sqrt(2 / 1024), rel=1e-12)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"mode": "fan_max"}, "mode='fan_max' is unknown"),
        ({"distribution": "cauchy"}, "distribution='cauchy' is unknown"),
        ({"scale": -1.0}, "scale=-1.0 is invalid"),
        ({"layout": "tf"}, "layout='tf' is unknown"),
        ({"groups": 3}, "groups=3 does not divide"),
        ({"chunks": 5}, "chunks=5 does not divide"),
    ],
)
def test_variance_scaling_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        I.variance_scaling_(torch.empty(8, 4, 3, 3), **kwargs)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: I.kaiming_normal_(torch.empty(4, 4), mode="fan_avg"), "mode='fan_avg' is not supported"),
        (lambda: I.kaiming_uniform_(torch.empty(4, 4), nonlinearity="swoosh"), "swoosh"),
        (lambda: I.normal_(torch.empty(4), std=-1.0), "std=-1.0 is negative"),
        (lambda: I.uniform_(torch.empty(4), 1.0, 0.0), "a=1.0 > b=0.0"),
        (lambda: I.trunc_normal_(torch.empty(4), std=0.0), "std=0.0 is invalid"),
        (lambda: I.trunc_normal_(torch.empty(4), a=1.0, b=-1.0), "a=1.0 must be <= b=-1.0"),
        (lambda: I.sparse_(torch.empty(4, 4), 1.5), "sparsity=1.5 is outside"),
        (lambda: I.dirac_(torch.empty(6, 2, 3), groups=4), "groups=4 must be a positive integer dividing"),
        (lambda: I.orthogonal_(torch.empty(4, 4), chunks=0), "chunks=0 is invalid"),
    ],
)
def test_bad_values_raise_with_the_value_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---- apply_spec_ -----------------------------------------------------------------------------


def test_apply_spec_structural_specs():
    assert torch.equal(I.apply_spec_(torch.empty(3, 3), schemes.Constant(0.7)), torch.full((3, 3), 0.7))
    eye = I.apply_spec_(torch.empty(3, 4), schemes.Identity(gain=2.0))
    assert torch.equal(eye, 2.0 * torch.eye(3, 4))
    ours = I.apply_spec_(torch.empty(6, 2, 3, 3), schemes.Dirac(groups=3))
    assert torch.equal(ours, tinit.dirac_(torch.empty(6, 2, 3, 3), groups=3))
    sp = I.apply_spec_(torch.empty(20, 6), schemes.Sparse(0.5, std=1.0), generator=gen())
    assert torch.all((sp == 0).sum(dim=0) == 10)
    orth = I.apply_spec_(torch.empty(8, 12), schemes.Orthogonal(gain=3.0), generator=gen())
    assert _gram_error(orth, 3.0) <= 1e-6 * 3.0**2
    per_chunk = I.apply_spec_(torch.empty(4, 4), schemes.Identity(), chunks=2)
    assert torch.equal(per_chunk, torch.eye(2, 4).repeat(2, 1))
    ll = I.apply_spec_(torch.empty(8, 12), schemes.LooksLinear(gain=3.0), generator=gen())
    a = ll[:4, :6]
    assert torch.equal(ll, torch.cat([torch.cat([a, -a], 1), torch.cat([-a, a], 1)]))
    assert _gram_error(a, 3.0) <= 1e-6 * 3.0**2


def test_apply_spec_equals_named_functions_bitwise():
    fi, fo = torch_fans((30, 20))
    pairs = [
        (schemes.lecun_normal(Fans(fi, fo)), lambda t: I.lecun_normal_(t, generator=gen())),
        (schemes.he_truncated_normal(Fans(fi, fo)), lambda t: I.he_truncated_normal_(t, generator=gen())),
        (schemes.Orthogonal(1.0), lambda t: I.orthogonal_(t, generator=gen())),
        (schemes.LooksLinear(1.0), lambda t: I.looks_linear_(t, generator=gen())),
        (schemes.LooksLinear(2.0, mirror_rows=False),
         lambda t: I.looks_linear_(t, 2.0, mirror_rows=False, generator=gen())),
    ]
    for spec, call in pairs:
        ours = I.apply_spec_(torch.empty(30, 20), spec, generator=gen())
        assert torch.equal(ours, call(torch.empty(30, 20)))


@pytest.mark.parametrize(
    "spec",
    [
        schemes.Normal(0.05), schemes.Uniform(-0.2, 0.6), schemes.TruncatedNormal(0.1, 0.0, -0.1, 0.2),
        schemes.variance_scaling(2.0, "fan_in", "truncated_normal", fans=Fans(128, 64)),
        schemes.torch_default(Fans(128, 64)),
    ],
    ids=lambda s: s.describe(),
)
def test_apply_spec_sample_std_matches_expected_std(spec):
    w = I.apply_spec_(torch.empty(128, 128, dtype=torch.float64), spec, generator=gen(8))
    _sd_ok(w, spec.expected_std)


def test_apply_spec_rejects_non_specs():
    with pytest.raises(TypeError, match="got dict"):
        I.apply_spec_(torch.empty(3, 3), {"std": 1.0})

    class Custom(schemes.Spec):
        pass

    with pytest.raises(TypeError, match="cannot realise a Custom"):
        I.apply_spec_(torch.empty(3, 3), Custom())
    with pytest.raises(ValueError, match="identity.*2 dimensions, got 3"):
        I.apply_spec_(torch.empty(3, 3, 3), schemes.Identity())
