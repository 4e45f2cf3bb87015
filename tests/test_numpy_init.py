"""Tests of initlab.numpy_init: distributions (KS, std), exact algebra, contract table, seeding.

Statistical tolerances: KS p-value > 1e-4 on >= 10^4 seeded samples; sample std within 5 standard
errors, SE = sigma / sqrt(2 n) (the normal-theory SE of a std; platykurtic uniform / truncated
samples have a smaller one, so the bound is conservative); sample mean within 5 sigma / sqrt(n).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from scipy import stats

from initlab import numpy_init as ni
from initlab import schemes
from initlab.errors import InitlabError
from initlab.fans import compute_fans

SHAPE = (100, 200)  # torch layout: fan_in = 200, fan_out = 100; 20 000 samples
FAN_IN, FAN_OUT = 200, 100
TN_STD = stats.truncnorm(-2.0, 2.0).std()  # std of N(0, 1) cut to [-2, 2], 0.8796...


def _normal(sigma):
    return stats.norm(0.0, sigma)


def _uniform(bound):
    return stats.uniform(-bound, 2.0 * bound)


def _trunc(sigma):
    """Samples of std sigma: parent std sigma / TN_STD cut at +-2 parent stds."""
    parent = sigma / TN_STD
    return stats.truncnorm(-2.0, 2.0, loc=0.0, scale=parent)


# (id, sampler(shape, rng, dtype), frozen scipy distribution from the formula, shape)
RANDOM_SCHEMES = [
    ("normal", lambda s, r, d: ni.normal(s, r, d, mean=0.5, std=2.0), stats.norm(0.5, 2.0), SHAPE),
    ("uniform", lambda s, r, d: ni.uniform(s, r, d, low=-1.0, high=3.0), stats.uniform(-1.0, 4.0), SHAPE),
    (
        "truncated_normal",
        lambda s, r, d: ni.truncated_normal(s, r, d, mean=0.1, std=1.5, a=-1.0, b=2.0),
        stats.truncnorm((-1.0 - 0.1) / 1.5, (2.0 - 0.1) / 1.5, loc=0.1, scale=1.5),
        SHAPE,
    ),
    ("glorot_normal", lambda s, r, d: ni.glorot_normal(s, r, d, gain=1.3),
     _normal(1.3 * math.sqrt(2.0 / (FAN_IN + FAN_OUT))), SHAPE),
    ("glorot_uniform", lambda s, r, d: ni.glorot_uniform(s, r, d),
     _uniform(math.sqrt(6.0 / (FAN_IN + FAN_OUT))), SHAPE),
    ("glorot_truncated_normal", lambda s, r, d: ni.glorot_truncated_normal(s, r, d),
     _trunc(math.sqrt(2.0 / (FAN_IN + FAN_OUT))), SHAPE),
    ("he_normal", lambda s, r, d: ni.he_normal(s, r, d), _normal(math.sqrt(2.0 / FAN_IN)), SHAPE),
    ("he_normal_fan_out", lambda s, r, d: ni.he_normal(s, r, d, mode="fan_out"),
     _normal(math.sqrt(2.0 / FAN_OUT)), SHAPE),
    ("he_uniform", lambda s, r, d: ni.he_uniform(s, r, d), _uniform(math.sqrt(6.0 / FAN_IN)), SHAPE),
    ("he_truncated_normal", lambda s, r, d: ni.he_truncated_normal(s, r, d),
     _trunc(math.sqrt(2.0 / FAN_IN)), SHAPE),
    ("lecun_normal", lambda s, r, d: ni.lecun_normal(s, r, d), _normal(math.sqrt(1.0 / FAN_IN)), SHAPE),
    ("lecun_uniform", lambda s, r, d: ni.lecun_uniform(s, r, d), _uniform(math.sqrt(3.0 / FAN_IN)), SHAPE),
    ("lecun_truncated_normal", lambda s, r, d: ni.lecun_truncated_normal(s, r, d),
     _trunc(math.sqrt(1.0 / FAN_IN)), SHAPE),
    ("variance_scaling_geo_uniform",
     lambda s, r, d: ni.variance_scaling(s, 3.0, "fan_geo_avg", "uniform", rng=r, dtype=d),
     _uniform(math.sqrt(3.0) * math.sqrt(3.0 / math.sqrt(FAN_IN * FAN_OUT))), SHAPE),
    # Keras conv kernel (kh, kw, in, out): fan_in = 25 * 20, fan_out = 25 * 40
    ("variance_scaling_keras_conv",
     lambda s, r, d: ni.variance_scaling(s, 2.0, "fan_avg", "normal", layout="keras", rng=r, dtype=d),
     _normal(math.sqrt(2.0 / ((25 * 20 + 25 * 40) / 2))), (5, 5, 20, 40)),
    # packed QKV (3 * 100, 100): per-chunk fans (100, 100)
    ("variance_scaling_chunks",
     lambda s, r, d: ni.variance_scaling(s, 1.0, "fan_avg", "truncated_normal", chunks=3, rng=r, dtype=d),
     _trunc(math.sqrt(1.0 / 100)), (300, 100)),
    # depthwise conv (64, 1, 5, 5) groups=64 ... too few samples; grouped (400, 25, 3, 3) groups=4
    ("variance_scaling_grouped",
     lambda s, r, d: ni.variance_scaling(s, 1.0, "fan_out", "normal", groups=4, rng=r, dtype=d),
     _normal(math.sqrt(1.0 / (400 // 4 * 9))), (400, 25, 3, 3)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, sampler, dist, shape", RANDOM_SCHEMES, ids=[s[0] for s in RANDOM_SCHEMES])
def test_random_scheme_distribution(name, sampler, dist, shape, dtype):
    w = sampler(shape, 20260, dtype)
    assert w.shape == shape and w.dtype == dtype
    x = w.astype(np.float64).ravel()
    n = x.size
    assert n >= 10_000
    assert stats.kstest(x, dist.cdf).pvalue > 1e-4
    sigma = dist.std()
    assert abs(x.std() - sigma) < 5.0 * sigma / math.sqrt(2.0 * n)
    assert abs(x.mean() - dist.mean()) < 5.0 * sigma / math.sqrt(n)


def test_truncated_normal_stays_inside_and_handles_tails():
    w = ni.truncated_normal((20_000,), 3, np.float64, mean=1.0, std=2.0, a=9.0, b=12.0)
    assert w.min() >= 9.0 and w.max() <= 12.0
    assert stats.kstest(w, stats.truncnorm(4.0, 5.5, loc=1.0, scale=2.0).cdf).pvalue > 1e-4
    w16 = ni.truncated_normal((1000,), 3, np.float16, a=-0.1, b=0.1)
    assert w16.min() >= np.float16(-0.1) and w16.max() <= np.float16(0.1)


def test_sparse_zeros_per_column_and_normal_rest():
    rows, cols, sparsity, std = 200, 100, 0.25, 0.05
    w = ni.sparse((rows, cols), 11, np.float64, sparsity=sparsity, std=std)
    zeros_per_column = (w == 0).sum(axis=0)
    assert (zeros_per_column == math.ceil(sparsity * rows)).all()
    rest = w[w != 0]
    assert rest.size >= 10_000
    assert stats.kstest(rest, stats.norm(0.0, std).cdf).pvalue > 1e-4
    assert abs(rest.std() - std) < 5.0 * std / math.sqrt(2.0 * rest.size)


# ---- exact algebra ------------------------------------------------------------------------------

# QR runs in float64 for every dtype, so float32 results are orthogonal up to float32 rounding of
# the entries (~6e-8 relative); products are taken in float64. float16: atol 2e-3 (eps 9.8e-4).
ORTHO_ATOL = {np.float64: 1e-6, np.float32: 1e-6, np.float16: 2e-3}


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("shape", [(64, 128), (128, 64), (16, 4, 3, 3), (50, 50)])
@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_orthogonal_is_orthogonal(shape, dtype, gain):
    w = ni.orthogonal(shape, 5, dtype, gain=gain)
    assert w.shape == shape and w.dtype == dtype
    m = w.reshape(shape[0], -1).astype(np.float64)
    rows, cols = m.shape
    gram = m @ m.T if rows <= cols else m.T @ m
    np.testing.assert_allclose(gram, gain**2 * np.eye(min(rows, cols)), atol=ORTHO_ATOL[dtype] * gain**2,
                               rtol=0)


def test_orthogonal_is_haar():
    # Entries of a Haar n x n orthogonal matrix satisfy x^2 ~ Beta(1/2, (n - 1)/2).
    n = 120
    w = ni.orthogonal((n, n), 8, np.float64).ravel()
    assert w.size >= 10_000
    assert stats.kstest(w**2, stats.beta(0.5, (n - 1) / 2.0).cdf).pvalue > 1e-4
    # Without the sign correction Householder QR makes Q[0, 0] one-signed; Haar makes it symmetric.
    gen = np.random.default_rng(9)
    draws = 2000
    positive = sum(ni.orthogonal((3, 3), gen, np.float64)[0, 0] > 0 for _ in range(draws))
    assert abs(positive / draws - 0.5) < 5.0 * math.sqrt(0.25 / draws)


def test_orthogonal_chunks_are_each_orthogonal():
    w = ni.orthogonal((12, 3), 0, np.float64, chunks=4)
    for block in np.split(w, 4):
        np.testing.assert_allclose(block.T @ block, np.eye(3), atol=1e-6, rtol=0)


@pytest.mark.parametrize("shape", [(8, 4, 3), (8, 4, 3, 3), (6, 6, 3, 3, 3), (5, 5, 4, 4)])
def test_delta_orthogonal_centre_is_isometry(shape):
    gain = 1.7
    w = ni.delta_orthogonal(shape, 1, np.float64, gain=gain)
    centre = tuple(k // 2 for k in shape[2:])
    c = w[(slice(None), slice(None), *centre)]
    np.testing.assert_allclose(c.T @ c, gain**2 * np.eye(shape[1]), atol=1e-6, rtol=0)
    mask = np.ones(shape, dtype=bool)
    mask[(slice(None), slice(None), *centre)] = False
    assert (w[mask] == 0).all()


@pytest.mark.parametrize("shape, groups", [((4, 4, 3), 1), ((6, 2, 3, 3), 2), ((8, 3, 3, 3, 3), 1),
                                           ((4, 6, 5, 5), 2)])
def test_dirac_matches_torch(shape, groups):
    expected = torch.nn.init.dirac_(torch.empty(shape, dtype=torch.float64), groups=groups).numpy()
    np.testing.assert_array_equal(ni.dirac(shape, dtype=np.float64, groups=groups), expected)


def test_eye_constant_zeros_ones():
    np.testing.assert_array_equal(ni.eye((3, 5)), torch.nn.init.eye_(torch.empty(3, 5)).numpy())
    np.testing.assert_array_equal(ni.identity((4, 2), gain=2.0), 2.0 * np.eye(4, 2, dtype=np.float32))
    assert (ni.constant((2, 3), value=0.25) == 0.25).all()
    assert (ni.zeros((2, 3)) == 0).all() and (ni.ones((2, 3), dtype=np.float16) == 1).all()


def test_keras_documented_limits():
    # Keras GlorotUniform: limit = sqrt(6 / (fan_in + fan_out)), fan_in = kh*kw*in, fan_out = kh*kw*out;
    # HeUniform: sqrt(6 / fan_in); LecunUniform: sqrt(3 / fan_in).
    shape = (3, 3, 16, 32)
    fan_in, fan_out = 3 * 3 * 16, 3 * 3 * 32
    for sampler, limit in [
        (ni.glorot_uniform, math.sqrt(6.0 / (fan_in + fan_out))),
        (ni.he_uniform, math.sqrt(6.0 / fan_in)),
        (ni.lecun_uniform, math.sqrt(3.0 / fan_in)),
    ]:
        w = sampler(shape, 4, np.float64, layout="keras")
        assert abs(w).max() <= limit and abs(w).max() > 0.99 * limit


def test_keras_depthwise_glorot_uniform_limit():
    """A DepthwiseConv2D(3) kernel (3, 3, 64, 1): true fans 3*3 (one input channel) and 3*3*1, so
    Keras GlorotUniform's limit sqrt(6 / (fan_in + fan_out)) is sqrt(6 / 18); Keras's own fans
    (3*3*64, 3*3) would give sqrt(6 / 585)."""
    shape = (3, 3, 64, 1)
    fan_in, fan_out = 3 * 3, 3 * 3 * 1
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    for w in [
        ni.glorot_uniform(shape, 4, np.float64, layout="keras_depthwise"),
        ni.variance_scaling(shape, 1.0, "fan_avg", "uniform", layout="keras_depthwise", rng=4,
                            dtype=np.float64),
    ]:
        # 576 uniform samples: P(max |w| < 0.95 limit) = 0.95 ** 576 < 1e-12
        assert w.shape == shape and abs(w).max() <= limit and abs(w).max() > 0.95 * limit
    # the same conv as a JAX kernel (feature_group_count=64): same fans, so the same draws
    assert np.array_equal(ni.glorot_uniform(shape, 4, np.float64, layout="keras_depthwise").ravel(),
                          ni.glorot_uniform((3, 3, 1, 64), 4, np.float64, layout="jax", groups=64).ravel())
    with pytest.raises(InitlabError, match=re.escape("layout='depthwise' is unknown")):
        ni.glorot_uniform(shape, layout="depthwise")


def test_aliases_are_the_same_functions():
    assert ni.xavier_normal is ni.glorot_normal and ni.xavier_uniform is ni.glorot_uniform
    assert ni.kaiming_normal is ni.he_normal and ni.kaiming_uniform is ni.he_uniform
    assert ni.identity is ni.eye and ni.trunc_normal is ni.truncated_normal


# ---- one core: named functions == sample_spec(schemes...) ---------------------------------------


def test_named_schemes_are_sample_spec_of_schemes():
    shape = (24, 12, 3)
    fans = compute_fans(shape)
    pairs = [
        (ni.he_normal(shape, 7), schemes.he_normal(fans)),
        (ni.glorot_uniform(shape, 7, gain=2.0), schemes.glorot_uniform(fans, 2.0)),
        (ni.lecun_truncated_normal(shape, 7), schemes.lecun_truncated_normal(fans)),
        (ni.variance_scaling(shape, 0.5, "fan_out", "uniform", rng=7),
         schemes.variance_scaling(0.5, "fan_out", "uniform", fans=fans)),
    ]
    for got, spec in pairs:
        np.testing.assert_array_equal(got, ni.sample_spec(spec, shape, 7))


SPECS = [
    schemes.Normal(0.3, 0.1), schemes.Uniform(-0.2, 0.4), schemes.TruncatedNormal(0.5, 0.0, -0.4, 0.6),
    schemes.Constant(0.7), schemes.Orthogonal(1.5), schemes.Identity(2.0), schemes.Dirac(2),
    schemes.DeltaOrthogonal(1.0), schemes.Sparse(0.1, 0.02), schemes.LooksLinear(1.5),
    schemes.Delta(schemes.LooksLinear(1.5)),
]
CONV_SPECS = (schemes.Dirac, schemes.DeltaOrthogonal, schemes.Delta)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: type(s).__name__)
def test_sample_spec_realises_every_spec(spec):
    shape = (120, 100) if not isinstance(spec, CONV_SPECS) else (120, 100, 3)
    w = ni.sample_spec(spec, shape, 3, np.float64)
    assert w.shape == shape and w.dtype == np.float64
    if spec.expected_std is not None:
        n, sigma = w.size, spec.expected_std
        assert abs(w.std() - sigma) <= 5.0 * sigma / math.sqrt(2.0 * n) + 1e-12


# ---- contract table: scheme x shape x dtype ------------------------------------------------------

ANY, FAN, TWO_D, CONV, LINEAR = "any", "fan", "2d", "conv", "linear"
CONTRACT = {
    "uniform": (ni.uniform, {}, ANY),
    "normal": (ni.normal, {}, ANY),
    "truncated_normal": (ni.truncated_normal, {}, ANY),
    "constant": (ni.constant, {"value": 0.5}, ANY),
    "zeros": (ni.zeros, {}, ANY),
    "ones": (ni.ones, {}, ANY),
    "glorot_normal": (ni.glorot_normal, {}, FAN),
    "glorot_uniform": (ni.glorot_uniform, {}, FAN),
    "glorot_truncated_normal": (ni.glorot_truncated_normal, {}, FAN),
    "he_normal": (ni.he_normal, {}, FAN),
    "he_uniform": (ni.he_uniform, {}, FAN),
    "he_truncated_normal": (ni.he_truncated_normal, {}, FAN),
    "lecun_normal": (ni.lecun_normal, {}, FAN),
    "lecun_uniform": (ni.lecun_uniform, {}, FAN),
    "lecun_truncated_normal": (ni.lecun_truncated_normal, {}, FAN),
    "variance_scaling": (ni.variance_scaling, {}, FAN),
    "orthogonal": (ni.orthogonal, {}, FAN),
    "eye": (ni.eye, {}, TWO_D),
    "sparse": (ni.sparse, {"sparsity": 0.2}, TWO_D),
    "dirac": (ni.dirac, {}, CONV),
    "delta_orthogonal": (ni.delta_orthogonal, {}, CONV),
    "looks_linear": (ni.looks_linear, {}, LINEAR),
    "delta_looks_linear": (ni.delta_looks_linear, {}, CONV),
}
SHAPES = [(), (7,), (16, 8), (8, 4, 3), (8, 4, 3, 3), (4, 2, 3, 3, 3), (8, 4, 3, 3, 3, 3)]
DTYPES = [np.float16, np.float32, np.float64]


def _expected_error(kind, shape):
    ndim = len(shape)
    if kind == FAN and ndim < 2:
        return f"needs a shape with at least 2 dimensions, got {ndim} (shape {shape})"
    if kind == TWO_D and ndim != 2:
        return f"needs a shape with 2 dimensions, got {ndim} (shape {shape})"
    if kind == LINEAR and ndim != 2:
        return f"needs a shape with 2 dimensions (a Linear weight), got {ndim} (shape {shape})"
    if kind == CONV and ndim not in (3, 4, 5):
        return f"needs a shape with 3, 4 or 5 dimensions (a Conv1d/2d/3d weight), got {ndim} (shape {shape})"
    return None


def _call(name, shape, dtype, rng=0):
    fn, kwargs, _ = CONTRACT[name]
    if name == "variance_scaling":
        return fn(shape, rng=rng, dtype=dtype, **kwargs)
    return fn(shape, rng, dtype, **kwargs)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_contract_table(name, shape, dtype):
    error = _expected_error(CONTRACT[name][2], shape)
    if error is not None:
        with pytest.raises(InitlabError, match=re.escape(f"{name} {error}")):
            _call(name, shape, dtype)
        return
    w = _call(name, shape, dtype)
    assert isinstance(w, np.ndarray)
    assert w.shape == shape and w.dtype == dtype
    assert np.isfinite(w).all()


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_zero_element_shape_warns_and_returns_empty(name):
    kind = CONTRACT[name][2]
    shape = {ANY: (0, 3), FAN: (0, 3), TWO_D: (4, 0), LINEAR: (4, 0), CONV: (0, 4, 3, 3)}[kind]
    with pytest.warns(UserWarning, match=re.escape(f"{name}: a zero-element shape {shape}")):
        w = _call(name, shape, np.float32)
    assert w.shape == shape and w.dtype == np.float32


@pytest.mark.parametrize("name", sorted(CONTRACT))
@pytest.mark.parametrize("dtype", [np.int32, np.bool_, np.complex64])
def test_non_float_dtype_is_a_type_error(name, dtype):
    kind = CONTRACT[name][2]
    shape = {ANY: (4, 3), FAN: (4, 3), TWO_D: (4, 3), LINEAR: (4, 4), CONV: (4, 4, 3)}[kind]
    with pytest.raises(TypeError, match=re.escape(f"{name} samples floating-point arrays, got dtype "
                                                  f"{np.dtype(dtype)}")):
        _call(name, shape, dtype)


def test_bfloat16_names_the_torch_front_end():
    with pytest.raises(TypeError, match="NumPy has no bfloat16"):
        ni.normal((2, 2), 0, "bfloat16")


# ---- seeding ------------------------------------------------------------------------------------

RANDOM_NAMES = [n for n in sorted(CONTRACT) if n not in ("constant", "zeros", "ones", "eye", "dirac")]


@pytest.mark.parametrize("name", RANDOM_NAMES)
def test_same_seed_same_bits_by_every_path(name):
    shape = (8, 4, 3) if CONTRACT[name][2] == CONV else (12, 6)
    a = _call(name, shape, np.float32, rng=1234)
    b = _call(name, shape, np.float32, rng=1234)
    c = _call(name, shape, np.float32, rng=np.random.default_rng(1234))
    assert a.tobytes() == b.tobytes() == c.tobytes()
    assert a.tobytes() != _call(name, shape, np.float32, rng=1235).tobytes()
    gen = np.random.default_rng(1234)
    first, second = _call(name, shape, np.float32, rng=gen), _call(name, shape, np.float32, rng=gen)
    assert first.tobytes() == a.tobytes() and second.tobytes() != first.tobytes()  # it advances


def test_global_numpy_state_is_never_read():
    np.random.seed(0)  # noqa: NPY002 - legacy global state, set on purpose
    a = ni.he_normal((10, 10), 5)
    np.random.seed(1)  # noqa: NPY002
    b = ni.he_normal((10, 10), 5)
    assert a.tobytes() == b.tobytes()
    # rng=None: a fresh OS-seeded generator, so two calls differ
    assert ni.he_normal((10, 10)).tobytes() != ni.he_normal((10, 10)).tobytes()


# ---- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, exc, message",
    [
        (lambda: ni.normal((2, 2), rng=np.random.RandomState(0)), TypeError,
         "rng must be a numpy.random.Generator, an int seed or None, got RandomState"),
        (lambda: ni.normal((2, 2), rng=-1), InitlabError, "rng=-1 is a negative seed"),
        (lambda: ni.normal((2, 2), std=-1.0), InitlabError, "std=-1.0 is invalid: a std must be"),
        (lambda: ni.uniform((2, 2), low=1.0, high=0.0), InitlabError, "Uniform(1.0, 0.0) is invalid"),
        (lambda: ni.truncated_normal((2, 2), std=0.0), InitlabError, "truncated_normal: std=0.0 is invalid"),
        (lambda: ni.truncated_normal((2, 2), a=1.0, b=-1.0), InitlabError, "a=1.0, b=-1.0 are invalid"),
        (lambda: ni.sparse((4, 4), sparsity=1.5), InitlabError, "sparse: sparsity=1.5 is outside [0, 1]"),
        (lambda: ni.sparse((4, 4), sparsity=0.5, std=-1.0), InitlabError, "sparse: std=-1.0 is negative"),
        (lambda: ni.delta_orthogonal((4, 8, 3)), InitlabError,
         "delta_orthogonal needs out_channels >= in_channels, got shape (4, 8, 3) (4 < 8)"),
        (lambda: ni.dirac((6, 2, 3), groups=4), InitlabError,
         "dirac: groups=4 must be a positive integer dividing dim 0 (= 6)"),
        (lambda: ni.orthogonal((6, 2), chunks=4), InitlabError,
         "orthogonal: chunks=4 does not divide dim 0 of shape (6, 2)"),
        (lambda: ni.looks_linear((6, 5)), InitlabError,
         "looks_linear: mirror_cols=True needs an even dim 1 (cols), got 5 in shape (6, 5)"),
        (lambda: ni.he_normal((4, 1, 3, 3), groups=3), InitlabError, "groups=3 does not divide"),
        (lambda: ni.he_normal((4, 4), layout="tf"), InitlabError, "layout='tf' is unknown"),
        (lambda: ni.he_normal((4, 4), mode="fan_max"), InitlabError, "mode='fan_max' is unknown"),
        (lambda: ni.variance_scaling((4, 4), 1.0, "fan_in", "cauchy"), InitlabError,
         "distribution='cauchy' is unknown"),
        (lambda: ni.variance_scaling((4, 4), -1.0), InitlabError, "scale=-1.0 is invalid"),
        (lambda: ni.normal((2, -1)), InitlabError, "must hold non-negative ints, got -1"),
        (lambda: ni.normal("ab"), InitlabError, "must hold non-negative ints, got 'a'"),
        (lambda: ni.sample_spec("normal", (2, 2)), TypeError,
         "sample_spec: spec must be an initlab.schemes.Spec, got str"),
        (lambda: ni.sample_spec(schemes.Orthogonal(), (5,)), InitlabError,
         "sample_spec(orthogonal(gain=1)) needs a shape with at least 2 dimensions, got 1"),
    ],
)
def test_errors_name_the_bad_value(call, exc, message):
    with pytest.raises(exc, match=re.escape(message)):
        call()


def test_bfloat16_of_ml_dtypes_names_the_torch_front_end():
    """keras and jax register ml_dtypes' bfloat16 with NumPy: the same message, whichever loaded."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    with pytest.raises(TypeError, match="NumPy has no bfloat16"):
        ni.normal((2, 2), 0, ml_dtypes.bfloat16)
    with pytest.raises(TypeError, match="NumPy has no bfloat16"):
        ni.normal((2, 2), 0, "bfloat16")
