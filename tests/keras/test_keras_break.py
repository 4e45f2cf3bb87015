"""``initlab.keras`` as a user breaks it: nested functional models whose layers share a path, plain chains
the torch rule would not plan, a conv head behind Keras's position-major ``Flatten``, per-head einsum
kernels, subclassed models, ``PReLU``, frozen layers and bad arguments."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
import torch
from keras import layers as L

import initlab
import initlab.keras as ik
from initlab.errors import InitlabError
from initlab.model.traverse import SkippedParameterWarning


def numpy(v):
    return keras.ops.convert_to_numpy(v)


def kernels(plan, suffix="kernel"):
    return [r for r in plan if r.name.endswith(suffix) and len(r.shape) > 1]


# ---- nested functional models: layer paths that clash ------------------------------------------------------


def clashing_paths():
    """An outer ``dense`` and a nested functional model's ``dense``: both kernels' Keras path is
    ``dense/kernel`` (a functional model built on its own does not prefix its layers' paths)."""
    xi = keras.Input((16,))
    block = keras.Model(xi, L.Dense(16, activation="tanh", name="dense")(xi), name="block")
    x = keras.Input((16,))
    h = L.Dense(16, activation="relu", name="dense")(x)
    return keras.Model(x, L.Dense(4, name="head")(block(h)))


def test_nested_functional_layers_with_one_path_are_each_planned_and_written():
    net = clashing_paths()
    assert [v.path for v in net.weights].count("dense/kernel") == 2  # the clash this test is about
    before = [numpy(v).copy() for v in net.weights]
    plan = ik.init_model(net, "he_normal", seed=0)
    names = [r.name for r in plan]
    assert len(set(names)) == len(names) == 6
    rows = {r.name: r for r in plan}
    outer, inner = rows["dense/kernel"], rows["block/dense/kernel"]
    assert (outer.activation, outer.input_activation) == ("relu", "linear")
    assert (inner.activation, inner.input_activation) == ("tanh", "relu")
    kernels_before = [b for b, v in zip(before, net.weights, strict=True) if v.path.endswith("kernel")]
    kernels_after = [numpy(v) for v in net.weights if v.path.endswith("kernel")]
    assert all(not np.array_equal(b, a) for b, a in zip(kernels_before, kernels_after, strict=True))
    assert all(r.applied for r in plan)


def test_clashing_paths_variance_plan_reads_each_layer_in_its_place():
    """The nested ``dense`` reads the outer ReLU's output: E[x^2] = 1/2 (z ~ N(0, 1), exact)."""
    rows = {r.name: r for r in ik.init_model(clashing_paths(), "variance", dry_run=True)}
    assert rows["dense/kernel"].q_in == pytest.approx(1.0, rel=1e-12)
    assert rows["block/dense/kernel"].q_in == pytest.approx(0.5, rel=1e-9)


# ---- the plain chain: torch's rule, and Keras's Flatten ---------------------------------------------------


def test_a_link_without_activation_makes_no_chain_as_for_torch():
    """torch's plain chain needs ``-> phi ->`` on every link but the last: an MLP with a linear link
    is propagated there, so it is here (the same rows)."""
    knet = keras.Sequential([keras.Input((8,)), L.Dense(16, activation="relu"), L.Dense(16),
                             L.Dense(16, activation="relu"), L.Dense(2)])
    tnet = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16),
                               torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    krows = kernels(ik.init_model(knet, "auto", dry_run=True))
    trows = kernels(initlab.init_model(tnet, "auto", dry_run=True), "weight")
    assert [r.scheme for r in trows] == ["propagated"] * 4
    assert [(r.scheme, r.spec) for r in krows] == [(r.scheme, r.spec) for r in trows]
    assert [r.std for r in krows] == pytest.approx([r.std for r in trows], rel=1e-9)


def test_a_pool_before_the_activation_makes_no_chain_as_for_torch():
    knet = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(8, 3, padding="same"), L.AveragePooling2D(2),
                             L.ReLU(), L.Flatten(), L.Dense(2)])
    plan = ik.init_model(knet, "auto", dry_run=True)
    assert "plain chain" not in plan.propagation
    assert [r.scheme for r in kernels(plan)] == ["propagated"] * 2


def flatten_cnn(image_format):
    shape = (4, 4, 8) if image_format == "channels_last" else (8, 4, 4)
    return keras.Sequential([keras.Input(shape), L.Conv2D(16, 3, padding="same", activation="relu"),
                             L.Conv2D(16, 3, padding="same", activation="relu"), L.Flatten(), L.Dense(256)])


@pytest.mark.parametrize("image_format", ["channels_last", "channels_first"])
def test_cnn_head_behind_a_flatten_is_an_exact_isometry(image_format):
    """Keras's ``Flatten`` is position-major (it moves channels last first), torch's channel-major: the
    looks-linear head reads the mirrored channel halves where the Flatten puts them, so the net maps
    every input to ``sqrt(2)`` times its norm (the torch twin's constant; float32: rtol 1e-5)."""
    old = keras.config.image_data_format()
    keras.config.set_image_data_format(image_format)
    try:
        net = flatten_cnn(image_format)
        plan = ik.init_model(net, "auto", seed=0)
        x = np.random.default_rng(0).standard_normal((32, *net.input_shape[1:])).astype(np.float32)
        y = numpy(net(x))
    finally:
        keras.config.set_image_data_format(old)
    assert "plain chain" in plan.propagation
    ratio = np.linalg.norm(y, axis=1) / np.linalg.norm(x.reshape(32, -1), axis=1)
    assert np.allclose(ratio, np.sqrt(2.0), rtol=1e-5, atol=0)


@pytest.mark.parametrize("flatten_format", [None, "channels_first"])
def test_per_layer_channels_first_flatten_head_is_an_exact_isometry(flatten_format):
    """Convs with their own ``data_format="channels_first"`` (the global one channels-last): the tensors
    are channels-first; a default ``Flatten`` then reads them channel-major (torch's order), one with
    ``data_format="channels_first"`` position-major: either way the head pairs the mirrored channels."""
    cf = {"data_format": "channels_first"}
    flatten = L.Flatten() if flatten_format is None else L.Flatten(data_format=flatten_format)
    net = keras.Sequential([keras.Input((8, 4, 4)), L.Conv2D(16, 3, padding="same", activation="relu", **cf),
                            L.Conv2D(16, 3, padding="same", activation="relu", **cf), flatten, L.Dense(256)])
    plan = ik.init_model(net, "auto", seed=0)
    x = np.random.default_rng(0).standard_normal((32, 8, 4, 4)).astype(np.float32)
    ratio = np.linalg.norm(numpy(net(x)), axis=1) / np.linalg.norm(x.reshape(32, -1), axis=1)
    assert "plain chain" in plan.propagation
    assert np.allclose(ratio, np.sqrt(2.0), rtol=1e-5, atol=0)


def test_per_layer_channels_first_variance_plan_is_the_torch_twins():
    """Zero padding, strides and pools read on the right axes: the stds of the torch twin (rel 1e-9)."""
    cf = {"data_format": "channels_first"}
    knet = keras.Sequential([keras.Input((3, 12, 12)),
                             L.Conv2D(8, 3, padding="same", activation="relu", **cf),
                             L.Conv2D(8, 5, strides=2, activation="tanh", **cf), L.AveragePooling2D(2, **cf),
                             L.Conv2D(4, 3, padding="same", **cf), L.GlobalAveragePooling2D(**cf),
                             L.Dense(2)])
    tnet = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 8, 5, stride=2), torch.nn.Tanh(), torch.nn.AvgPool2d(2),
                               torch.nn.Conv2d(8, 4, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(4, 2))
    kstd = [r.std for r in kernels(ik.init_model(knet, "variance", dry_run=True))]
    tplan = initlab.init_model(tnet, "variance", example_inputs=torch.zeros(1, 3, 12, 12), dry_run=True)
    assert kstd == pytest.approx([r.std for r in kernels(tplan, "weight")], rel=1e-9)


def test_flatten_head_plan_and_numbers_are_the_torch_twins():
    """The same rows as the torch twin, and the head kernel is the twin's weight with its columns in
    Keras's flatten order: the Keras net computes what the torch net computes (float32: atol 1e-5)."""
    knet = flatten_cnn("channels_last")
    tnet = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(256, 256))
    krows = kernels(ik.init_model(knet, "auto", seed=0))
    trows = kernels(initlab.init_model(tnet, "auto", example_inputs=torch.zeros(1, 8, 4, 4),
                                       dry_run=True), "weight")
    assert [(r.scheme, r.spec) for r in krows] == [(r.scheme, r.spec) for r in trows]
    with torch.no_grad():
        for layer, module in zip(knet.layers[:2], [tnet[0], tnet[2]], strict=True):
            module.weight.copy_(torch.from_numpy(np.transpose(numpy(layer.kernel), (3, 2, 0, 1)).copy()))
            module.bias.copy_(torch.from_numpy(numpy(layer.bias)))
        k = numpy(knet.layers[-1].kernel)  # (position * 16 + channel, out)
        order = np.arange(256).reshape(16, 16).T.reshape(-1)  # torch column c*16 + p <- Keras row p*16 + c
        twin = k[order].T  # the head as torch holds it: (out, channel-major features)
        assert np.array_equal(twin[:, :128], -twin[:, 128:])  # [A, -A]: channels 0-7 against 8-15
        tnet[-1].weight.copy_(torch.from_numpy(twin.copy()))
        tnet[-1].bias.copy_(torch.from_numpy(numpy(knet.layers[-1].bias)))
        x = np.random.default_rng(1).standard_normal((8, 4, 4, 8)).astype(np.float32)
        yt = tnet(torch.from_numpy(np.transpose(x, (0, 3, 1, 2)).copy())).numpy()
    assert np.allclose(numpy(knet(x)), yt, atol=1e-5, rtol=0)


# ---- preprocessing layers make the data ---------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["auto", "variance"])
def test_preprocessing_on_the_input_is_the_data(scheme):
    """``Rescaling`` / ``Normalization`` on the input make the (standardised) data the propagation starts
    from: the plan is the one without them (the ReLU MLP keeps its isometric chain)."""
    def mlp(*pre):
        return keras.Sequential([keras.Input((20,)), *pre, L.Dense(32, activation="relu"),
                                 L.Dense(32, activation="relu"), L.Dense(4)])

    plain = ik.init_model(mlp(), scheme, dry_run=True)
    prep = ik.init_model(mlp(L.Rescaling(1 / 255), L.Normalization(mean=0.5, variance=0.25)), scheme,
                         dry_run=True)
    assert [(r.scheme, r.spec, r.std) for r in prep] == [(r.scheme, r.spec, r.std) for r in plain]
    assert "not modelled" not in prep.propagation


def test_preprocessing_inside_the_network_is_not_modelled():
    x = keras.Input((8,))
    h = L.Rescaling(3.0)(L.Dense(8, activation="relu")(x))
    plan = ik.init_model(keras.Model(x, L.Dense(2)(h)), "variance", dry_run=True)
    assert "Rescaling" in plan.propagation and "not modelled" in plan.propagation
    assert plan.rows[2].scheme != "propagated"  # the head reads moments no one knows: per-layer rule


# ---- EinsumDense: a shared (per-head) axis is a block ---------------------------------------------------


@pytest.mark.parametrize("init", [ik.Orthogonal(seed=0, layout="einsum", equation="bhi,hio->bho"),
                                  ik.Named("orthogonal", seed=0, layout="einsum", equation="bhi,hio->bho")])
def test_per_head_einsum_kernel_is_orthogonal_per_head(init):
    w = numpy(init((4, 6, 5)))  # 4 heads, (in 6, out 5) each: W_h^T W_h = I (float32: atol 1e-5)
    for h in range(4):
        assert np.allclose(w[h].T @ w[h], np.eye(5), atol=1e-5)


def test_per_head_looks_linear_mirrors_each_head():
    w = numpy(ik.LooksLinear(seed=0, layout="einsum", equation="bhi,hio->bho")((3, 6, 4)))
    for h in range(3):
        assert np.array_equal(w[h][:3, :2], -w[h][3:, :2]) and np.array_equal(w[h][:3, :2], -w[h][:3, 2:])


def test_per_head_orthogonal_row_std_is_per_head():
    """``init_model(..., "orthogonal")`` on a per-head EinsumDense: each head's (6 in, 5 out) block is
    semi-orthogonal, entry std ``1 / sqrt(6)``; the plan says so and the kernel has it."""
    x = keras.Input((4, 6))
    net = keras.Model(x, L.EinsumDense("bhi,hio->bho", output_shape=(4, 5))(x))
    row = ik.init_model(net, "orthogonal", seed=0).rows[0]
    assert row.chunks == 4 and row.fan_in == 6
    assert row.std == pytest.approx(1 / np.sqrt(6), rel=1e-12)
    w = numpy(net.layers[-1].kernel)
    assert all(np.allclose(w[h].T @ w[h], np.eye(5), atol=1e-5) for h in range(4))


def test_depthwise_dirac_passes_every_channel():
    """One group per input channel: a DepthwiseConv2D with the Dirac kernel is the identity (exact)."""
    layer = L.DepthwiseConv2D(3, padding="same", depthwise_initializer=ik.Dirac(layout="keras_depthwise"))
    x = np.random.default_rng(0).standard_normal((2, 5, 5, 4)).astype(np.float32)
    assert np.array_equal(numpy(layer(x)), x)
    w = numpy(ik.Dirac(layout="keras_depthwise")((3, 3, 2, 3)))  # depth_multiplier 3: the first copy
    assert w[1, 1].tolist() == [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]] and float(abs(w).sum()) == 2.0


# ---- the frameworks' defaults reproduced ------------------------------------------------------------------


def uniform_bound(w):
    """``max |w|`` of a seeded uniform draw of >= 500 entries: within 1% of its bound (P(miss) < 1e-2^500)."""
    return float(np.abs(numpy(w)).max())


def test_torch_default_on_a_transposed_kernel_is_torchs_own():
    """torch's ConvTranspose2d(16, 8, 3) reads ``fan_in = weight.size(1) * rf = 8 * 9`` (its weight is
    ``(in, out, k, k)``): the bound ``1/sqrt(72)``, as ``init_model(..., "torch_default")`` draws it."""
    shape = (3, 3, 8, 16)
    bound = 1.0 / np.sqrt(8 * 9)
    assert torch.nn.ConvTranspose2d(16, 8, 3, stride=2).weight.abs().max().item() <= bound
    for init in (ik.TorchDefault(layout="keras_transposed", strides=2, seed=0),
                 ik.Named("torch_default", layout="keras_transposed", strides=2, seed=0)):
        assert bound * 0.99 < uniform_bound(init(shape)) <= bound * (1 + 1e-6)
    x = keras.Input((5, 5, 16))
    net = keras.Model(x, L.Conv2DTranspose(8, 3, strides=2)(x))
    assert ik.init_model(net, "torch_default", dry_run=True).rows[0].bound == pytest.approx(bound, rel=1e-12)


def test_named_keras_default_on_a_depthwise_kernel_is_keras_own():
    """Keras's GlorotUniform reads ``(shape[-2] rf, shape[-1] rf) = (576, 9)`` of a (3, 3, 64, 1) kernel."""
    shape = (3, 3, 64, 1)
    bound = np.sqrt(6.0 / (576 + 9))
    keras_own = keras.initializers.GlorotUniform(seed=0)(shape)
    assert bound * 0.99 < uniform_bound(keras_own) <= bound * (1 + 1e-6)
    init = ik.Named("keras_default", layout="keras_depthwise", seed=0)
    assert bound * 0.99 < uniform_bound(init(shape)) <= bound * (1 + 1e-6)


# ---- subclassed models ------------------------------------------------------------------------------------


class Subclassed(keras.Model):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.hidden, self.out = L.Dense(8, activation="relu"), L.Dense(2)

    def call(self, x):
        return self.out(self.hidden(x))


def test_a_built_subclassed_model_is_named_as_such_not_as_unbuilt():
    net = Subclassed(name="sub")
    net(np.zeros((1, 4), np.float32))
    with pytest.raises(InitlabError, match=r"'sub' is a subclassed keras.Model \(Subclassed\)") as info:
        ik.init_model(net)
    message = str(info.value)
    assert "not built" not in message and "keras.Model(inputs, outputs)" in message and "\n" not in message


def test_a_nested_subclassed_model_is_skipped_and_named():
    """Like any layer initlab has no family for: left as it is, in ``plan.skipped`` and the warning."""
    block = Subclassed(name="block")
    x = keras.Input((4,))
    h = L.Dense(4, activation="relu")(x)
    net = keras.Model(x, L.Dense(3)(block(h)))
    before = [numpy(v).copy() for v in block.weights]
    with pytest.warns(SkippedParameterWarning, match=r"block \(Subclassed\)"):
        plan = ik.init_model(net, "auto", seed=0)
    assert [s["module"] for s in plan.skipped] == ["block"]
    assert all(np.array_equal(b, numpy(v)) for b, v in zip(before, block.weights, strict=True))
    assert len(plan.rows) == 4


# ---- PReLU, frozen layers --------------------------------------------------------------------------------


def prelu_net(alpha_initializer="zeros"):
    return keras.Sequential([keras.Input((8,)), L.Dense(16, name="hidden"),
                             L.PReLU(alpha_initializer=alpha_initializer, name="prelu"),
                             L.Dense(2, name="head")])


def test_prelu_slope_is_planned_as_torch_plans_it():
    """torch's handler sets a PReLU's slope to its ``init`` value under every scheme; Keras's is the
    layer's ``alpha_initializer`` (zeros by default), and the graph reads that slope, not a trained one."""
    net = prelu_net(keras.initializers.Constant(0.25))
    net.layers[1].alpha.assign(np.full((16,), 0.9, np.float32))  # "trained"
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedParameterWarning)
        plan = ik.init_model(net, "variance", seed=0)
    rows = {r.name.split("/", 1)[1]: r for r in plan}
    alpha = rows["prelu/alpha"]
    assert (alpha.scheme, alpha.spec) == ("prelu_init", "constant(0.25)") and alpha.applied
    assert np.array_equal(numpy(net.layers[1].alpha), np.full((16,), 0.25, np.float32))
    assert rows["hidden/kernel"].activation == "leaky_relu" and not plan.skipped
    assert rows["head/kernel"].q_in == pytest.approx((1 + 0.25**2) / 2, rel=1e-9)  # E[lrelu_0.25(z)^2]
    twin = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.PReLU(init=0.25), torch.nn.Linear(16, 2))
    trows = {r.name: r for r in initlab.init_model(twin, "variance", dry_run=True)}
    assert (trows["1.weight"].scheme, trows["1.weight"].spec) == (alpha.scheme, alpha.spec)
    assert [rows[k].std for k in ("hidden/kernel", "head/kernel")] == pytest.approx(
        [trows[k].std for k in ("0.weight", "2.weight")], rel=1e-9)


def test_prelu_default_zeros_reads_as_relu():
    plan = ik.init_model(prelu_net(), "variance", dry_run=True)
    assert plan.rows[0].activation == "relu" and not plan.skipped
    assert plan.rows[2].spec == "constant(0)"


def test_frozen_layers_are_initialized_with_a_note_as_for_torch():
    net = keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"), L.Dense(2)])
    net.layers[0].trainable = False
    plan = ik.init_model(net, "he_normal", seed=0)
    assert all("frozen" in (r.note or "") for r in plan.rows[:2])
    assert not any("frozen" in (r.note or "") for r in plan.rows[2:])
    assert all(r.applied for r in plan)


# ---- LoRA adapters and quantized layers -----------------------------------------------------------------


def test_lora_adapted_dense_is_planned_and_computes_its_kernel():
    """``enable_lora`` makes ``kernel`` a computed tensor (kernel + A B scale): the stored kernel is planned
    (frozen), A as Keras draws it (He uniform), B zeros, so the adapted kernel is the planned one."""
    net = keras.Sequential([keras.Input((8,)), L.Dense(16, activation="relu"), L.Dense(4)])
    net.layers[0].enable_lora(2)
    plan = ik.init_model(net, "auto", seed=0)
    rows = {r.name.rsplit("/", 1)[1]: r for r in plan.rows[:4]}
    assert [r.scheme for r in rows.values()] == ["looks_linear", "zeros", "he_uniform", "zeros"]
    assert "frozen" in rows["kernel"].note and rows["lora_kernel_a"].bound == pytest.approx(np.sqrt(6 / 8))
    layer = net.layers[0]
    assert np.array_equal(numpy(layer.kernel), numpy(layer._kernel)) and not numpy(layer.lora_kernel_b).any()
    bare = keras.Sequential([keras.Input((8,)), L.Dense(16, activation="relu"), L.Dense(4)])
    same = [(r.scheme, r.spec, r.std) for r in kernels(ik.init_model(bare, "auto", dry_run=True))]
    assert [(r.scheme, r.spec, r.std) for r in plan if r.name.endswith("/kernel")] == same


def test_quantized_layer_is_skipped_and_says_why():
    net = keras.Sequential([keras.Input((8,)), L.Dense(16, activation="relu"), L.Dense(4)])
    net.layers[0].quantize("int8")
    with pytest.warns(SkippedParameterWarning, match="dense"):
        plan = ik.init_model(net, "variance", seed=0)
    assert plan.skipped[0]["why"].startswith("quantized (int8)")
    assert [r.name.rsplit("/", 1)[1] for r in plan] == ["kernel", "bias"] and all(r.applied for r in plan)


# ---- bad input --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ik.VarianceScaling("abc"), r"scale='abc' is invalid: pass a finite number > 0"),
        (lambda: ik.VarianceScaling(None), r"scale=None is invalid: pass a finite number > 0"),
        (lambda: ik.VarianceScaling(True), r"scale=True is invalid: pass a finite number > 0"),
        (lambda: ik.VarianceScaling("2.0"), r"scale='2.0' is invalid: pass a finite number > 0"),
        (lambda: ik.HeNormal(criterion="fwd"), r"criterion='fwd' is unknown: use 'forward' or 'backward'"),
        (lambda: ik.Orthogonal(criterion="fwd"), r"criterion='fwd' is unknown"),
        (lambda: ik.HeNormal(seed=0)((None, 4)), r"shape \(None, 4\) is invalid: pass the kernel's full"),
        (lambda: ik.HeNormal(seed=0)((4, -2)), r"shape \(4, -2\) is invalid"),
    ],
)
def test_bad_initializer_argument_is_one_clear_error(make, message):
    with pytest.raises(InitlabError, match=message) as info:
        make()
    assert "\n" not in str(info.value)
