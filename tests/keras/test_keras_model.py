"""``initlab.keras.init_model``: Sequential and functional models, residual adds, conv / depthwise /
transposed / einsum / LSTM layers, the same plan as the torch front end, and bad input."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import torch
from keras import layers as L

import initlab
import initlab.keras as ik
from initlab.errors import InitlabError
from initlab.model.chain import UnmirroredWarning
from initlab.model.traverse import SkippedParameterWarning
from initlab.theory import depth_point


def numpy(v):
    return keras.ops.convert_to_numpy(v)


def mlp(widths, activation, inputs):
    return keras.Sequential(
        [keras.Input((inputs,))]
        + [L.Dense(w, activation=activation) for w in widths[:-1]]
        + [L.Dense(widths[-1])]
    )


# ---- Sequential: the plain chain ------------------------------------------------------------------------


def test_relu_mlp_auto_is_an_exact_isometry():
    """Looks-linear kernels (Balduzzi et al. 2017): the ReLU MLP 32 -> 64 -> 64 -> 32 computes an
    orthogonal map at init, so every input keeps its norm (float32 rounding: rtol 1e-5)."""
    net = mlp([64, 64, 32], "relu", 32)
    plan = ik.init_model(net, seed=0)
    assert [r.scheme for r in plan if r.name.endswith("kernel")] == ["looks_linear"] * 3
    assert plan.applied and all(r.applied for r in plan)
    x = np.random.default_rng(0).standard_normal((16, 32)).astype(np.float32)
    y = numpy(net(x))
    assert np.allclose(np.linalg.norm(y, axis=1), np.linalg.norm(x, axis=1), rtol=1e-5, atol=0)


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_plain_mlp_plan_is_the_torch_front_ends(activation):
    """The same rows (scheme, spec, std, gain) as initlab.init_model on the torch twin."""
    acts = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "gelu": torch.nn.GELU}
    twin = torch.nn.Sequential(
        torch.nn.Linear(20, 32),
        acts[activation](),
        torch.nn.Linear(32, 32),
        acts[activation](),
        torch.nn.Linear(32, 10),
    )
    tplan = initlab.init_model(twin, "auto", dry_run=True)
    kplan = ik.init_model(mlp([32, 32, 10], activation, 20), "auto", dry_run=True)
    trows = [r for r in tplan if r.name.endswith("weight")]
    krows = [r for r in kplan if r.name.endswith("kernel")]
    assert [(r.scheme, r.spec) for r in krows] == [(r.scheme, r.spec) for r in trows]
    for k, t in zip(krows, trows, strict=True):
        assert k.std == pytest.approx(t.std, rel=1e-12) and k.gain == pytest.approx(t.gain, rel=1e-12)


def test_odd_width_relu_mlp_gets_the_torch_front_ends_rows_and_note():
    """An odd width cannot be mirrored: both front ends give the same orthogonal rows and say why."""
    twin = torch.nn.Sequential(torch.nn.Linear(20, 19), torch.nn.ReLU(), torch.nn.Linear(19, 19),
                               torch.nn.ReLU(), torch.nn.Linear(19, 10))
    with pytest.warns(UnmirroredWarning):
        trows = [r for r in initlab.init_model(twin, "auto", dry_run=True) if r.name.endswith("weight")]
    with pytest.warns(UnmirroredWarning, match="an odd number of outputs"):
        kplan = ik.init_model(mlp([19, 19, 10], "relu", 20), "auto", dry_run=True)
    krows = [r for r in kplan if r.name.endswith("kernel")]
    assert [(r.scheme, r.spec, r.note) for r in krows] == [(r.scheme, r.spec, r.note) for r in trows]
    assert [("19 outputs, an odd number" in r.note) for r in krows] == [True, True, False]


def test_plain_cnn_auto_plan_is_the_torch_front_ends():
    """A plain CNN (odd kernels, a Dense head behind global average pooling) gets delta kernels."""
    knet = keras.Sequential([keras.Input((8, 8, 4)), L.Conv2D(8, 3, padding="same", activation="relu"),
                             L.Conv2D(8, 3, strides=2, padding="same", activation="gelu"),
                             L.GlobalAveragePooling2D(), L.Dense(10)])
    tnet = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 8, 3, stride=2, padding=1), torch.nn.GELU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10))
    krows = [r for r in ik.init_model(knet, "auto", seed=0) if r.name.endswith("kernel")]
    trows = [r for r in initlab.init_model(tnet, "auto", dry_run=True) if r.name.endswith("weight")]
    assert [(r.scheme, r.spec) for r in krows] == [(r.scheme, r.spec) for r in trows]
    assert krows[0].spec.startswith("delta_looks_linear")
    assert [r.std for r in krows] == pytest.approx([r.std for r in trows], rel=1e-12)
    centre = numpy(knet.layers[0].kernel)
    assert not centre[[0, 2]].any() and not centre[:, [0, 2]].any()  # zero but the centre tap


def test_tanh_cnn_auto_solves_the_torch_front_ends_depth_point():
    """A tanh CNN gets iid kernels at the depth-aware q* (initlab.model.chain.CONV_DEPTH_NOTE), the
    same stds and note as the torch front end (the same moment propagation, same geometry)."""
    knet = keras.Sequential([keras.Input((12, 12, 3))]
                            + [L.Conv2D(8, 3, padding="same", activation="tanh") for _ in range(10)]
                            + [L.GlobalAveragePooling2D(), L.Dense(10)])
    layers: list[torch.nn.Module] = []
    for i in range(10):
        layers += [torch.nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1), torch.nn.Tanh()]
    tnet = torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(8, 10))
    kplan = ik.init_model(knet, "auto", seed=0)
    tplan = initlab.init_model(tnet, "auto", dry_run=True, example_inputs=torch.zeros(2, 3, 12, 12))
    krows = [r for r in kplan if r.name.endswith("kernel")]
    trows = [r for r in tplan if r.name.endswith("weight")]
    assert [r.scheme for r in krows] == ["propagated"] * 11 == [r.scheme for r in trows]
    assert [r.std for r in krows] == pytest.approx([r.std for r in trows], rel=1e-9)
    q_star = depth_point("tanh", 10).q_star
    assert q_star < 1 and f"q*={q_star:.3g}" in kplan.propagation and f"q*={q_star:.3g}" in tplan.propagation
    kernel = numpy(knet.layers[3].kernel)
    assert kernel[0, 0].any()  # every tap drawn, not a delta kernel


def test_sigmoid_chain_biases_centre_phi_of_zero():
    """After a sigmoid the next layer's bias is -0.5 * W 1, so it reads sigmoid - 1/2 (Pennington et al.)."""
    net = mlp([8, 8, 3], "sigmoid", 6)
    plan = ik.init_model(net, "auto", seed=0)
    assert [r.scheme for r in plan if r.name.endswith("bias")] == ["zeros", "centering", "centering"]
    for layer in net.layers[1:]:
        k, b = numpy(layer.kernel), numpy(layer.bias)
        assert np.allclose(b, -0.5 * k.sum(axis=0), atol=1e-6, rtol=0)


def test_nested_models_are_walked_inside_their_caller():
    block = keras.Sequential([keras.Input((16,)), L.Dense(16, activation="tanh", name="dense")], name="block")
    x = keras.Input((16,))
    h = L.Dense(16, activation="relu", name="dense")(x)  # the same name as the block's layer
    y = L.Dense(4)(block(h))
    plan = ik.init_model(keras.Model(x, y), "variance", seed=0)
    rows = {r.name: r for r in plan}
    inner = rows["block/dense/kernel"]
    assert inner.activation == "tanh" and inner.input_activation == "relu"
    assert inner.q_in == pytest.approx(0.5, rel=1e-9)  # E[relu(z)^2], z ~ N(0, 1)


def test_conv_net_variance_plan_is_the_torch_front_ends():
    """Zero padding and strides propagate as for torch: Conv2D(padding="same") is Conv2d(padding=1)."""
    knet = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            L.Conv2D(8, 3, padding="same", activation="relu"),
            L.Conv2D(8, 3, strides=2, padding="same", activation="tanh"),
            L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
            L.Conv2DTranspose(4, 4, strides=2, padding="same"),
            L.GlobalAveragePooling2D(),
            L.Dense(10),
        ]
    )
    tnet = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, stride=2, padding=1),
        torch.nn.Tanh(),
        torch.nn.Conv2d(8, 16, 3, padding=1, groups=8),
        torch.nn.ConvTranspose2d(16, 4, 4, stride=2, padding=1),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 10),
    )
    kplan = ik.init_model(knet, "variance", dry_run=True)
    tplan = initlab.init_model(tnet, "variance", example_inputs=torch.zeros(1, 3, 16, 16), dry_run=True)
    kstd = [r.std for r in kplan if r.name.endswith("kernel")]
    tstd = [r.std for r in tplan if r.name.endswith("weight")]
    assert kstd == pytest.approx(tstd, rel=1e-9)
    assert [r.fan_in for r in kplan if r.name.endswith("kernel")] == [27, 72, 9, 16 * 16 // 4, 4]


def test_variance_keeps_every_pre_activation_at_unit_second_moment():
    """Measured on 512 standard-normal inputs: each Dense output's E[y^2] is the plan's 1 (width 512, 5
    layers; the spread over a seeded draw is a few %: 10 % allowed)."""
    x = keras.Input((256,))
    outs, h = [], x
    for act in ("relu", "tanh", "gelu", "selu"):
        y = L.Dense(512)(h)
        outs.append(y)
        h = L.Activation(act)(y)
    net = keras.Model(x, outs)
    plan = ik.init_model(net, "variance", seed=0)
    assert [round(r.q_out, 9) for r in plan if r.name.endswith("kernel")] == [1.0] * 4
    data = np.random.default_rng(1).standard_normal((512, 256)).astype(np.float32)
    for y in net(data):
        assert float(np.mean(numpy(y) ** 2)) == pytest.approx(1.0, rel=0.1)


# ---- functional: residual adds -----------------------------------------------------------------------------


def residual_net(norm: bool):
    x = keras.Input((32,))
    h = L.Dense(32, activation="relu")(x)
    if norm:
        h = L.BatchNormalization()(h)
    for _ in range(3):
        b = L.Dense(32, activation="relu")(h)
        b = L.Dense(32)(b)
        h = L.Add()([h, b])
    return keras.Model(x, L.Dense(10)(h))


def test_residual_branch_ends_start_at_zero_without_norms():
    net = residual_net(norm=False)
    plan = ik.init_model(net, "auto", seed=0)
    kernels = [r for r in plan if r.name.endswith("kernel")]
    ends = [kernels[2], kernels[4], kernels[6]]  # the last layer of each block's branch
    assert all(r.scheme == "zeros" and r.note.startswith("residual branch end") for r in ends)
    assert all(not numpy(net.get_layer(r.module).kernel).any() for r in ends)
    assert "3 residual branch end(s)" in plan.propagation
    variance = ik.init_model(residual_net(norm=False), "variance", seed=0, dry_run=True)
    assert not any(r.scheme == "zeros" for r in variance if r.name.endswith("kernel"))


def test_residual_branch_ends_share_a_doubling_with_a_norm():
    """With a norm in the model the L = 3 branch ends each add q_skip (2^(1/3) - 1) to the stream."""
    plan = ik.init_model(residual_net(norm=True), "auto", seed=0, dry_run=True)
    kernels = [r for r in plan if r.name.endswith("kernel")]
    # blocks: kernels 1-2, 3-4, 5-6; a branch's first layer reads the stream (its skip)
    for first, end in ((kernels[1], kernels[2]), (kernels[3], kernels[4]), (kernels[5], kernels[6])):
        assert end.scheme == "propagated" and "residual branch" in end.note
        assert end.q_out == pytest.approx(first.q_in * (2 ** (1 / 3) - 1), rel=1e-9)


# ---- every layer family ------------------------------------------------------------------------------------


def zoo():
    x = keras.Input((8, 8, 4))
    h = L.Conv2D(6, 3, padding="same", activation="relu", name="conv")(x)
    h = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="gelu", name="depthwise")(h)
    h = L.Conv2DTranspose(5, 3, strides=2, padding="same", name="transposed")(h)
    h = L.SeparableConv2D(8, 3, padding="same", activation="silu", name="separable")(h)
    h = L.Reshape((16 * 16, 8))(h)
    h = L.EinsumDense(
        "abc,cd->abd", output_shape=(None, 12), bias_axes="d", activation="tanh", name="einsum"
    )(h)
    h = L.LSTM(16, name="lstm")(h)
    return keras.Model(x, L.Dense(10, name="head")(h))


def test_every_family_gets_true_fans_and_its_std():
    net = zoo()
    plan = ik.init_model(net, "he_normal", seed=0)
    fans = {r.name: (r.fan_in, r.fan_out) for r in plan if r.fan_in is not None}
    assert fans["conv/kernel"] == (36, 54)
    assert fans["depthwise/kernel"] == (9, 18)  # Keras: (54, 18)
    assert fans["transposed/kernel"] == (round(12 * 9 / 4), 45)  # in * prod(k / s)
    assert fans["separable/depthwise_kernel"] == (9, 9)
    assert fans["einsum/kernel"] == (8, 12)
    assert fans["lstm/lstm_cell/kernel"] == (12, 16)  # per gate
    by_name = {r.name: r for r in plan}
    assert by_name["depthwise/kernel"].gain == pytest.approx(initlab.gain("gelu"), rel=1e-12)
    assert by_name["conv/kernel"].note == "input not from a nonlinearity: gain 1"
    for r in plan:
        w = numpy(dict((v.path, v) for v in net.weights)[r.name])
        if r.scheme == "he_normal" and r.chunks == 1:
            assert float(w.std()) == pytest.approx(r.std, rel=5 / math.sqrt(2 * w.size))


def test_auto_zoo_forget_bias_and_propagated_kernels():
    net = zoo()
    plan = ik.init_model(net, "auto", seed=0)
    bias = numpy(net.get_layer("lstm").cell.bias)
    assert np.array_equal(bias, np.r_[np.zeros(16), np.ones(16), np.zeros(32)].astype(np.float32))
    rec = numpy(net.get_layer("lstm").cell.recurrent_kernel)  # (16, 64): orthogonal per gate
    for g in range(4):
        block = rec[:, 16 * g : 16 * (g + 1)]
        assert np.allclose(block.T @ block, np.eye(16), atol=1e-5, rtol=0)
    assert {r.scheme for r in plan if r.name.endswith(("/kernel", "_kernel")) and "lstm" not in r.name} == {
        "propagated"
    }


def test_embedding_gru_and_bidirectional_lstm():
    x = keras.Input((10,), dtype="int32")
    h = L.Embedding(100, 16, name="embed")(x)
    h = L.GRU(8, return_sequences=True, name="gru")(h)
    h = L.Bidirectional(L.LSTM(4), name="bi")(h)
    net = keras.Model(x, L.Dense(2)(h))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedParameterWarning)
        plan = ik.init_model(net, "auto", seed=0)
    rows = {r.name: r for r in plan}
    assert rows["embed/embeddings"].spec == "normal(std=1)" and rows["embed/embeddings"].q_out == 1.0
    assert rows["gru/gru_cell/recurrent_kernel"].scheme == "orthogonal"
    assert rows["gru/gru_cell/kernel"].chunks == 3
    for side in ("forward", "backward"):
        cell = getattr(net.get_layer("bi"), f"{side}_layer").cell
        assert np.array_equal(numpy(cell.bias)[4:8], np.ones(4, np.float32))  # forget gate
        rec = numpy(cell.recurrent_kernel)
        assert np.allclose(rec[:, :4].T @ rec[:, :4], np.eye(4), atol=1e-5, rtol=0)


def test_critical_needs_a_bias_variance_for_gelu_and_names_the_layer():
    with pytest.raises(InitlabError, match=r"layer 'depthwise' feeds gelu.*sigma_b2="):
        ik.init_model(zoo(), "critical", dry_run=True)
    plan = ik.init_model(mlp([16, 4], "tanh", 8), "critical", sigma_b2=0.05, seed=0)
    bias = plan.rows[1]  # the first layer's bias
    assert bias.scheme == "critical" and bias.std == pytest.approx(math.sqrt(0.05))


# ---- seeds, dry runs, skipped layers ---------------------------------------------------------------------


def test_same_seed_same_bits_and_dry_run_writes_nothing():
    a, b = zoo(), zoo()
    ik.init_model(a, "auto", seed=3)
    ik.init_model(b, "auto", seed=3)
    for va, vb in zip(a.weights, b.weights, strict=True):
        assert np.array_equal(numpy(va), numpy(vb))
    before = [numpy(v).copy() for v in a.weights]
    plan = ik.init_model(a, "auto", seed=4, dry_run=True)
    assert not plan.applied and not any(r.applied for r in plan)
    assert all(np.array_equal(v, numpy(w)) for v, w in zip(before, a.weights, strict=True))


def test_a_layer_no_family_knows_is_left_alone_and_named():
    x = keras.Input((5, 16))
    h = L.MultiHeadAttention(2, 8)(x, x)
    net = keras.Model(x, L.Dense(3)(h))
    with pytest.warns(SkippedParameterWarning, match=r"multi_head_attention \(MultiHeadAttention\)"):
        plan = ik.init_model(net, "auto", seed=0, dry_run=True)
    assert plan.skipped[0]["type"] == "MultiHeadAttention"


# ---- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "kwargs", "error", "message"),
    [
        (
            lambda: mlp([4, 2], "relu", 3),
            {"scheme": "fixup"},
            InitlabError,
            r"scheme 'fixup' is unknown: use one of",
        ),
        (
            lambda: keras.Sequential([L.Dense(4)]),
            {},
            InitlabError,
            r"is not built: call model.build\(input_shape\)",
        ),
        (lambda: torch.nn.Linear(2, 2), {}, TypeError, r"must be a keras.Model, got Linear"),
        (lambda: mlp([4, 2], "relu", 3), {"seed": -1}, InitlabError, r"seed=-1 is negative"),
        (lambda: mlp([4, 2], "relu", 3), {"sigma_b2": -0.1}, InitlabError, r"sigma_b2=-0.1 is invalid"),
    ],
)
def test_bad_input_is_one_clear_error(make, kwargs, error, message):
    with pytest.raises(error, match=message) as info:
        ik.init_model(make(), **kwargs)
    assert "\n" not in str(info.value)


# ---- save and reload ---------------------------------------------------------------------------------------


def test_saved_model_with_initlab_initializers_reloads(tmp_path):
    net = keras.Sequential(
        [
            keras.Input((12,)),
            L.Dense(16, activation="gelu", kernel_initializer=ik.HeNormal(seed=1, gain="gelu")),
            L.Dense(
                8,
                kernel_initializer=ik.Orthogonal(seed=2),
                bias_initializer=ik.CriticalBias("tanh", 0.05, seed=3),
            ),
            L.Dense(4, kernel_initializer=ik.VarianceScaling(2.0, "fan_geo_avg", "uniform", seed=4)),
        ]
    )
    path = tmp_path / "net.keras"
    net.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        loaded = keras.models.load_model(path)
    for a, b in zip(net.weights, loaded.weights, strict=True):
        assert np.array_equal(numpy(a), numpy(b))
    init = loaded.layers[0].kernel_initializer
    assert type(init) is ik.HeNormal and init.get_config() == net.layers[0].kernel_initializer.get_config()
    assert re.search(r"initlab>HeNormal", (tmp_path / "net.keras").read_bytes().decode("latin-1"))


_FRESH = """
import json, sys
import keras, numpy as np
import initlab.keras as ik
net = keras.models.load_model(sys.argv[1])
init = net.layers[0].kernel_initializer
again = ik.HeNormal(seed=5)
out = {"config": init.get_config(), "reloaded_draw": keras.ops.convert_to_numpy(init((12, 16))).tolist(),
       "draws": [keras.ops.convert_to_numpy(again((4, 3))).tolist() for _ in range(2)],
       "kernel": keras.ops.convert_to_numpy(net.layers[0].kernel).tolist()}
print(json.dumps(out))
"""


def test_fresh_process_reloads_and_draws_the_same_bits(tmp_path):
    """A new Python process: ``import initlab.keras`` is all a saved model needs; the reloaded initializer
    starts again at call 0 (Keras builds the layer with it, call 0, before loading the weights, so the
    next draw is call 1); the same construction and call order give the same bits."""
    net = keras.Sequential(
        [keras.Input((12,)), L.Dense(16, kernel_initializer=ik.HeNormal(seed=1, gain="gelu"))]
    )
    path = tmp_path / "fresh.keras"
    net.save(path)
    env = {**os.environ, "KERAS_BACKEND": "torch", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-c", _FRESH, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["config"] == net.layers[0].kernel_initializer.get_config()
    assert np.array_equal(np.float32(out["kernel"]), numpy(net.layers[0].kernel))
    rebuilt = ik.HeNormal(seed=1, gain="gelu")
    rebuilt((12, 16))  # call 0: the build
    assert np.array_equal(np.float32(out["reloaded_draw"]), numpy(rebuilt((12, 16))))
    here = ik.HeNormal(seed=5)
    assert [np.array_equal(np.float32(d), numpy(here((4, 3)))) for d in out["draws"]] == [True, True]
