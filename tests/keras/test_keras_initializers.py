"""initlab's Keras initializers: variances from their formulas, the same numbers as numpy_init, Keras's
own truncated normal reproduced, seeds that give a fresh draw per call, and config round trips."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
from scipy import stats

import initlab.keras as ik
from initlab import numpy_init as ni
from initlab.errors import InitlabError
from initlab.gains import gain
from initlab.schemes import TRUNCATED_NORMAL_STD_2
from initlab.theory import critical_point


def draw(init, shape, dtype="float32"):
    return keras.ops.convert_to_numpy(init(shape, dtype=dtype))


def seq(seed, call=0):
    return np.random.SeedSequence(seed, spawn_key=(call,))


# ---- variances from their formulas ---------------------------------------------------------------------

FAN_IN, FAN_OUT = 256, 128
DENSE = (FAN_IN, FAN_OUT)  # a Dense kernel (in, out)

VARIANCE_TABLE = [
    (ik.VarianceScaling(2.0, "fan_in", "untruncated_normal", seed=0), DENSE, math.sqrt(2 / FAN_IN)),
    (
        ik.VarianceScaling(1.0, "fan_geo_avg", "uniform", seed=0),
        DENSE,
        math.sqrt(1 / math.sqrt(FAN_IN * FAN_OUT)),
    ),
    (ik.GlorotUniform(seed=0), DENSE, math.sqrt(2 / (FAN_IN + FAN_OUT))),
    (ik.GlorotNormal(seed=0), DENSE, math.sqrt(2 / (FAN_IN + FAN_OUT))),
    (ik.HeNormal(seed=0), DENSE, math.sqrt(2 / FAN_IN)),
    (ik.HeUniform(seed=0), DENSE, math.sqrt(2 / FAN_IN)),
    (ik.LecunNormal(seed=0), DENSE, math.sqrt(1 / FAN_IN)),
    (ik.LecunUniform(seed=0), DENSE, math.sqrt(1 / FAN_IN)),
    (ik.TorchDefault(seed=0), DENSE, 1 / math.sqrt(3 * FAN_IN)),
    (ik.HeNormal(seed=0, gain="gelu"), DENSE, gain("gelu") / math.sqrt(FAN_IN)),
    (ik.GlorotNormal(seed=0, gain="silu"), DENSE, gain("silu") * math.sqrt(2 / (FAN_IN + FAN_OUT))),
    (ik.HeNormal(seed=0, layout="keras_depthwise"), (3, 3, 64, 4), math.sqrt(2 / 9)),
    (ik.HeNormal(seed=0, layout="keras_transposed", strides=2), (4, 4, 32, 16), math.sqrt(2 / (16 * 16 / 4))),
    (ik.LecunNormal(seed=0, layout="einsum", equation="abc,cde->abde"), (64, 8, 16), math.sqrt(1 / 64)),
    (ik.Named("he_normal", seed=0), DENSE, math.sqrt(2 / FAN_IN)),
    (ik.Named("small", seed=0), DENSE, 0.01),
    (
        ik.Critical("tanh", 0.05, seed=0),
        DENSE,
        critical_point("tanh", sigma_b2=0.05).sigma_w / math.sqrt(FAN_IN),
    ),
    (ik.CriticalBias("tanh", 0.05, seed=0), (8192,), math.sqrt(0.05)),
    (ik.Normal(0.02, seed=0), DENSE, 0.02),
    (ik.Uniform(-0.1, 0.1, seed=0), DENSE, 0.2 / math.sqrt(12)),
]


@pytest.mark.parametrize(("init", "shape", "std"), VARIANCE_TABLE, ids=lambda v: type(v).__name__)
def test_sample_std_matches_the_formula(init, shape, std):
    w = draw(init, shape, "float64")
    n = w.size
    # standard error of a sample std is ~ sigma / sqrt(2 n) for a normal (less for uniform and truncated
    # normals, whose kurtosis is smaller): 5 of them, seeded
    assert w.shape == shape
    assert abs(float(w.std()) - std) < 5 * std / math.sqrt(2 * n)
    assert abs(float(w.mean())) < 5 * std / math.sqrt(n)


def test_truncated_and_uniform_bounds():
    w = draw(ik.HeNormal(seed=1), DENSE, "float64")
    parent = math.sqrt(2 / FAN_IN) / TRUNCATED_NORMAL_STD_2
    assert float(abs(w).max()) <= 2 * parent
    u = draw(ik.GlorotUniform(seed=1), DENSE, "float64")
    assert float(abs(u).max()) <= math.sqrt(6 / (FAN_IN + FAN_OUT))


# ---- the same numbers as numpy_init ---------------------------------------------------------------------


def test_dense_kernel_is_numpy_init_of_the_torch_twin_bit_for_bit():
    w = draw(ik.HeNormal(seed=3), (32, 64))
    ref = ni.he_truncated_normal((64, 32), rng=seq(3))  # torch's Linear(32, 64) weight (out, in)
    assert w.dtype == np.float32 and np.array_equal(w, ref.T)
    g = draw(ik.VarianceScaling(1.0, "fan_avg", "uniform", seed=3), (3, 3, 8, 16))
    ref = ni.variance_scaling((16, 8, 3, 3), 1.0, "fan_avg", "uniform", rng=seq(3))
    assert np.array_equal(g, np.transpose(ref, (2, 3, 1, 0)))


def test_depthwise_and_per_gate_orthogonal_are_numpy_init_bit_for_bit():
    d = draw(ik.HeNormal(seed=4, layout="keras_depthwise"), (3, 3, 8, 2))
    ref = ni.he_truncated_normal((16, 1, 3, 3), rng=seq(4), groups=8)  # Conv2d(8, 16, 3, groups=8)
    assert np.array_equal(d, np.transpose(ref, (2, 3, 1, 0)).reshape(3, 3, 8, 2))
    o = draw(ik.Orthogonal(chunks=4, seed=4), (16, 64), "float64")
    ref = ni.orthogonal((64, 16), rng=seq(4), dtype=np.float64, chunks=4)
    assert np.array_equal(o, ref.T)


@pytest.mark.parametrize(
    ("init", "reference", "shape"),
    [
        (ik.GlorotNormal(seed=5), lambda rng: ni.glorot_truncated_normal((96, 160), rng=rng), (160, 96)),
        (ik.LecunUniform(seed=5), lambda rng: ni.lecun_uniform((96, 160), rng=rng), (160, 96)),
        (
            ik.VarianceScaling(3.0, "fan_out", "untruncated_normal", seed=5),
            lambda rng: ni.variance_scaling((96, 160), 3.0, "fan_out", "normal", rng=rng),
            (160, 96),
        ),
    ],
    ids=["GlorotNormal", "LecunUniform", "VarianceScaling"],
)
def test_distribution_matches_numpy_init_ks(init, reference, shape):
    """Two independent seeded draws of the same scheme: two-sample KS, p > 1e-4."""
    w = draw(init, shape, "float64").ravel()
    ref = reference(np.random.default_rng(12345)).ravel()
    assert stats.ks_2samp(w, ref).pvalue > 1e-4


# ---- Keras's own semantics ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ours", "theirs", "mode_n", "scale", "truncated"),
    [
        (ik.GlorotNormal, keras.initializers.GlorotNormal, (FAN_IN + FAN_OUT) / 2, 1.0, True),
        (ik.HeNormal, keras.initializers.HeNormal, FAN_IN, 2.0, True),
        (ik.LecunNormal, keras.initializers.LecunNormal, FAN_IN, 1.0, True),
        (ik.GlorotUniform, keras.initializers.GlorotUniform, (FAN_IN + FAN_OUT) / 2, 1.0, False),
        (ik.HeUniform, keras.initializers.HeUniform, FAN_IN, 2.0, False),
    ],
    ids=["GlorotNormal", "HeNormal", "LecunNormal", "GlorotUniform", "HeUniform"],
)
def test_keras_initializers_reproduced(ours, theirs, mode_n, scale, truncated):
    """Where fans agree (a Dense kernel), initlab's class is Keras's distribution: the same parent std or
    bound (Keras's formula, to rounding), and samples indistinguishable from Keras's own (two-sample KS
    on 32768 draws each, p > 1e-4; Keras's torch backend cannot share NumPy's bits)."""
    init = ours(seed=0)
    spec = init.spec(init.layout.fans(DENSE))
    if truncated:  # Keras: stddev = sqrt(scale / n) / .87962566103423978, cut at +-2 stddev
        keras_std = math.sqrt(scale / mode_n) / 0.87962566103423978
        assert spec.std == pytest.approx(keras_std, rel=1e-12)
        assert (spec.a, spec.b) == pytest.approx((-2 * keras_std, 2 * keras_std), rel=1e-12)
    else:  # Keras: limit = sqrt(3 * scale / n)
        assert spec.high == pytest.approx(math.sqrt(3 * scale / mode_n), rel=1e-12)
    w = draw(init, DENSE, "float64").ravel()
    k = keras.ops.convert_to_numpy(theirs(seed=0)(DENSE, dtype="float64")).ravel()
    assert stats.ks_2samp(w, k).pvalue > 1e-4
    assert abs(w.std() - k.std()) < 5 * spec.expected_std * math.sqrt(2 / w.size) * math.sqrt(2)


def test_truncated_normal_shape_is_keras_truncation_at_two_parent_stds():
    """One-sample KS of the standardised draws against N(0, 1) cut to [-2, 2] (p > 1e-4), and their std
    0.8796 of the parent's (the correction that gives the samples std sqrt(scale / n))."""
    w = draw(ik.LecunNormal(seed=2), DENSE, "float64").ravel()
    parent = math.sqrt(1 / FAN_IN) / TRUNCATED_NORMAL_STD_2
    assert stats.kstest(w / parent, stats.truncnorm(-2, 2).cdf).pvalue > 1e-4
    assert TRUNCATED_NORMAL_STD_2 == pytest.approx(0.87962566103423978, rel=1e-15)


# ---- structural ---------------------------------------------------------------------------------------


def test_orthogonal_per_gate_and_gain_from_an_activation():
    w = draw(ik.Orthogonal("relu", chunks=4, seed=0), (16, 64), "float64")
    for g in range(4):
        block = w[:, 16 * g : 16 * (g + 1)]
        assert np.allclose(block.T @ block, 2.0 * np.eye(16), atol=1e-6, rtol=0)
    dense = draw(ik.Orthogonal(seed=0), (64, 16), "float64")  # in >= out: orthonormal columns
    assert np.allclose(dense.T @ dense, np.eye(16), atol=1e-6, rtol=0)


def test_conv_orthogonal_is_numpy_inits_kernel_in_keras_layout():
    """The Keras kernel (kh, kw, in, out) is numpy_init.conv_orthogonal's (out, in, kh, kw), moved:
    the taps sum to an isometry and the off-centre taps are set."""
    w = draw(ik.ConvOrthogonal(seed=0), (3, 3, 4, 8), "float64")
    m = w.sum(axis=(0, 1))  # (in, out)
    assert np.allclose(m @ m.T, np.eye(4), atol=1e-6, rtol=0)
    assert abs(w[0, 0]).max() > 0


def test_delta_orthogonal_and_delta_looks_linear():
    w = draw(ik.DeltaOrthogonal(seed=0), (3, 3, 4, 8), "float64")
    centre = w[1, 1]  # (in, out)
    assert np.allclose(centre @ centre.T, np.eye(4), atol=1e-6, rtol=0)
    w[1, 1] = 0
    assert not w.any()
    d = draw(ik.DeltaLooksLinear(seed=0), (3, 3, 8, 6), "float64")
    a = d[1, 1, :4, :3]
    assert np.array_equal(d[1, 1], np.block([[a, -a], [-a, a]]))


def test_looks_linear_mirrors_outputs_and_inputs():
    w = draw(ik.LooksLinear(seed=0), (6, 8), "float64")  # Dense(8) on 6 features
    a = w[:3, :4]
    assert np.array_equal(w, np.block([[a, -a], [-a, a]]))
    assert np.allclose(a @ a.T, np.eye(3), atol=1e-6, rtol=0)  # the torch twin's block A (4, 3): A^T A = I
    rows = draw(ik.LooksLinear(seed=0, mirror_inputs=False), (5, 8), "float64")  # first layer: outputs only
    assert np.array_equal(rows[:, :4], -rows[:, 4:])


def test_identity_dirac_sparse():
    assert np.array_equal(draw(ik.Identity(2.0), (4, 6)), 2.0 * np.eye(4, 6, dtype=np.float32))
    d = draw(ik.Dirac(), (3, 3, 4, 4))
    assert np.array_equal(d[1, 1], np.eye(4)) and d.sum() == 4
    s = draw(ik.Sparse(0.25, 0.1, seed=0), (10, 8))  # each input unit: ceil(0.25 * 8) = 2 zero weights
    assert [(row == 0).sum() for row in s] == [2] * 10


# ---- seeds ------------------------------------------------------------------------------------------


def test_seeded_initializer_gives_a_fresh_reproducible_draw_per_call():
    init = ik.HeNormal(seed=7)
    a, b = draw(init, (32, 16)), draw(init, (32, 16))
    assert not np.array_equal(a, b)
    again = ik.HeNormal(seed=7)
    assert np.array_equal(draw(again, (32, 16)), a) and np.array_equal(draw(again, (32, 16)), b)


def test_one_instance_on_two_layers_gives_two_kernels_unlike_keras():
    """keras-hub#352: Keras's seeded initializers repeat themselves when one instance is reused."""

    def kernels(init):
        net = keras.Sequential(
            [
                keras.Input((16,)),
                keras.layers.Dense(16, kernel_initializer=init),
                keras.layers.Dense(16, kernel_initializer=init),
            ]
        )
        return [keras.ops.convert_to_numpy(layer.kernel) for layer in net.layers]

    ours = kernels(ik.GlorotUniform(seed=1))
    assert not np.array_equal(ours[0], ours[1])
    theirs = kernels(keras.initializers.GlorotUniform(seed=1))
    assert np.array_equal(theirs[0], theirs[1])  # the trap initlab avoids


def test_unseeded_follows_keras_global_seed():
    keras.utils.set_random_seed(11)
    init = ik.LecunNormal()
    a, b = draw(init, (8, 8)), draw(init, (8, 8))
    keras.utils.set_random_seed(11)
    assert np.array_equal(draw(ik.LecunNormal(), (8, 8)), a)
    assert not np.array_equal(a, b)


# ---- serialisation ----------------------------------------------------------------------------------

ALL = [
    ik.VarianceScaling(
        0.5, "fan_geo_avg", "normal", seed=1, gain="tanh", layout="keras_transposed", strides=(2, 2)
    ),
    ik.GlorotUniform(seed=2),
    ik.GlorotNormal(seed=2, gain=1.5),
    ik.HeNormal(seed=3, gain="leaky_relu", param=0.1),
    ik.HeUniform(seed=3, layout="keras_depthwise"),
    ik.LecunNormal(seed=4, layout="einsum", equation="ab,bc->ac"),
    ik.LecunUniform(seed=4),
    ik.TorchDefault(seed=5),
    ik.Named("glorot_truncated_normal", seed=5, gain="selu"),
    ik.Orthogonal(1.2, seed=6, chunks=4),
    ik.DeltaOrthogonal(seed=6),
    ik.ConvOrthogonal(0.5, seed=6),
    ik.LooksLinear(seed=7, mirror_inputs=False),
    ik.DeltaLooksLinear(seed=7),
    ik.Critical("gelu", 0.5, seed=8),
    ik.CriticalBias("tanh", 0.05, seed=8),
    ik.Normal(0.1, 0.5, seed=9),
    ik.Uniform(-1.0, 2.0, seed=9),
    ik.Sparse(0.5, seed=10),
    ik.Identity(0.5),
    ik.Dirac(groups=2),
]
SHAPES = {
    "DeltaOrthogonal": (3, 3, 4, 8),
    "ConvOrthogonal": (3, 3, 4, 8),
    "DeltaLooksLinear": (3, 3, 4, 8),
    "Dirac": (3, 3, 4, 8),
    "CriticalBias": (16,),
}


def _shape(init):
    lay = init.layout
    if lay.name == "keras_transposed":
        return (3, 3, 8, 4)
    if lay.name == "keras_depthwise":
        return (3, 3, 4, 2)
    return SHAPES.get(type(init).__name__, (8, 16))


@pytest.mark.parametrize("init", ALL, ids=lambda i: type(i).__name__)
def test_config_round_trip(init):
    config = init.get_config()
    json.dumps(config)  # JSON-ready
    rebuilt = type(init).from_config(config)
    assert rebuilt.get_config() == config
    restored = keras.initializers.deserialize(keras.initializers.serialize(type(init).from_config(config)))
    assert type(restored) is type(init) and restored.get_config() == config
    shape = _shape(init)
    assert np.array_equal(draw(type(init).from_config(config), shape), draw(rebuilt, shape))


# ---- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ik.VarianceScaling(distribution="gaussian"), r"distribution='gaussian' is unknown"),
        (lambda: ik.VarianceScaling(mode="fan_mean"), r"mode='fan_mean' is unknown"),
        (lambda: ik.HeNormal(seed=-1), r"seed=-1 is invalid"),
        (lambda: ik.HeNormal(seed=1.5), r"seed=1.5 is invalid"),
        (lambda: ik.HeNormal(gain="reluu"), r"activation 'reluu' is unknown"),
        (lambda: ik.HeNormal(gain=0.0), r"gain=0.0 is invalid"),
        (lambda: ik.Named("hee_normal"), r"scheme 'hee_normal' is unknown"),
        (lambda: ik.Critical("gelu"), r"no critical point|unstable|sigma_b2"),
        (lambda: ik.GlorotUniform(layout="einsum"), r"needs equation="),
        (lambda: ik.LooksLinear()((5, 4)), r"needs an even dim 1"),
        (lambda: ik.DeltaOrthogonal()((4, 4)), r"3, 4 or 5 dimensions"),
        (lambda: ik.HeNormal()((4, 4), dtype="int32"), r"dtype='int32'.*float"),
    ],
)
def test_bad_input_is_one_clear_error(make, message):
    with pytest.raises(InitlabError, match=message):
        make()


def test_orthogonal_conv_kernels_are_isometric_per_group_and_per_depthwise_channel():
    """groups=2: each group's (in/g, out/g) tap sum is orthogonal; depthwise: each channel's
    centre tap is +-1 (a 1x1 orthogonal block), not a slice of one big block."""
    w = draw(ik.ConvOrthogonal(seed=0, groups=2), (3, 3, 4, 8), "float64")
    m = w.sum(axis=(0, 1))  # (in / groups, out)
    for g in range(2):
        block = m[:, 4 * g: 4 * (g + 1)]
        assert np.allclose(block.T @ block, np.eye(4), atol=1e-6, rtol=0)
    d = draw(ik.DeltaOrthogonal(seed=0, layout="keras_depthwise"), (3, 3, 4, 1), "float64")
    assert np.allclose(abs(d[1, 1]), 1.0, atol=1e-12, rtol=0)
