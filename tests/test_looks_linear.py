"""Tests of the looks-linear init (Balduzzi et al. 2017): schemes.LooksLinear, init.looks_linear_,
numpy_init.looks_linear, and both spec realisers.

Everything here is exact algebra, no statistics:

* the sign structure is checked bit for bit (``-A`` is exact in every float format);
* the block ``A`` is bit-identical to ``orthogonal_`` / ``orthogonal`` on an ``(rb, cb)`` tensor
  drawn from the same generator, so its Haar law is the one tests/test_init.py checks;
* orthogonality of ``A`` uses the tolerances of the orthogonal tests: torch float32
  ``1e-6 gain^2``, float64 ``1e-12 gain^2``, 16-bit ``2 (2u + u^2) gain^2`` (u the unit roundoff);
  NumPy (float64 QR, then cast) ``1e-6 gain^2`` for float32/64 and ``2e-3 gain^2`` for float16;
* a looks-linear ReLU / GELU / SiLU / softplus / leaky-ReLU MLP equals ``c^(L-1) A_L ... A_1 x``:
  float64 to ``atol = 1e-12`` (inputs and activations are O(1); rounding is ~1e-16 per op over a
  few dozen ops), float32 to ``atol = 2e-5``.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - the usual spelling

from initlab import init as I  # noqa: N812 - drop-in spelling
from initlab import numpy_init as ni
from initlab import schemes
from initlab.errors import InitlabError

MODES = {"rows+cols": (True, True), "rows": (True, False), "cols": (False, True)}
SHAPES = [(8, 6), (6, 10), (12, 12), (2, 2)]


def gen(seed: int = 1234) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def block_shape(shape, mirror_rows, mirror_cols):
    """rb = rows / 2 if rows are mirrored, cb = cols / 2 if cols are mirrored (the formula)."""
    rows, cols = shape
    return (rows // 2 if mirror_rows else rows), (cols // 2 if mirror_cols else cols)


def mirrored_torch(a: torch.Tensor, mirror_rows: bool, mirror_cols: bool) -> torch.Tensor:
    """W from A: [[A, -A], [-A, A]], [[A], [-A]] or [A, -A]."""
    top = torch.cat([a, -a], dim=1) if mirror_cols else a
    return torch.cat([top, -top], dim=0) if mirror_rows else top


def mirrored_numpy(a: np.ndarray, mirror_rows: bool, mirror_cols: bool) -> np.ndarray:
    top = np.concatenate([a, -a], axis=1) if mirror_cols else a
    return np.concatenate([top, -top], axis=0) if mirror_rows else top


def gram_error(a: torch.Tensor | np.ndarray, gain: float) -> float:
    """max |A A^T - gain^2 I| (rb <= cb) or |A^T A - gain^2 I| (rb > cb), in float64."""
    m = torch.as_tensor(np.asarray(a, dtype=np.float64) if isinstance(a, np.ndarray) else a.double())
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    return float((gram - gain**2 * torch.eye(gram.shape[0], dtype=torch.float64)).abs().max())


TORCH_TOL = {
    torch.float32: 1e-6,
    torch.float64: 1e-12,
    torch.bfloat16: 2 * (2 * 2.0**-9 + 2.0**-18),
    torch.float16: 2 * (2 * 2.0**-11 + 2.0**-22),
}
NUMPY_TOL = {np.float32: 1e-6, np.float64: 1e-6, np.float16: 2e-3}


# ---- the spec (math layer) ----------------------------------------------------------------------


def test_spec_fields_describe_and_shape_requirement():
    spec = schemes.LooksLinear()
    assert (spec.gain, spec.mirror_rows, spec.mirror_cols) == (1.0, True, True)
    assert spec.expected_std is None  # structural: no single std
    assert spec.describe() == "looks_linear(gain=1, rows+cols)"
    assert schemes.LooksLinear(1.5, mirror_cols=False).describe() == "looks_linear(gain=1.5, rows)"
    assert schemes.LooksLinear(2.0, mirror_rows=False).describe() == "looks_linear(gain=2, cols)"
    assert schemes.STRUCTURAL_SHAPES[schemes.LooksLinear] == (0, (2,), " (a Linear weight)")
    assert schemes.shape_requirement(spec, "x") == (0, (2,), " (a Linear weight)")
    assert {"LooksLinear", "looks_linear_block"} <= set(schemes.__all__)
    assert "looks_linear_" in I.__all__ and "looks_linear" in ni.__all__
    with pytest.raises(Exception):  # frozen  # noqa: B017 - dataclasses.FrozenInstanceError
        spec.gain = 2.0  # type: ignore[misc]


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_looks_linear_block_is_the_formula(mode, shape):
    mr, mc = MODES[mode]
    assert schemes.looks_linear_block(schemes.LooksLinear(1.0, mr, mc), shape) == block_shape(shape, mr, mc)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"gain": float("nan")}, "LooksLinear gain=nan is invalid: pass a finite real number"),
        ({"gain": float("inf")}, "LooksLinear gain=inf is invalid"),
        ({"gain": np.float64("-inf")}, "inf) is invalid"),  # repr np.float64(-inf) on NumPy 2
        ({"gain": True}, "LooksLinear gain=True is invalid"),
        ({"gain": "1"}, "LooksLinear gain='1' is invalid"),
        ({"gain": None}, "LooksLinear gain=None is invalid"),
        ({"gain": 1 + 0j}, "LooksLinear gain=(1+0j) is invalid"),
        ({"mirror_rows": 1}, "LooksLinear mirror_rows=1 is invalid: pass True or False"),
        ({"mirror_cols": "yes"}, "LooksLinear mirror_cols='yes' is invalid: pass True or False"),
        ({"mirror_cols": None}, "LooksLinear mirror_cols=None is invalid"),
        ({"mirror_rows": False, "mirror_cols": False},
         "mirrors nothing: set at least one to True, or use Orthogonal(gain)"),
    ],
    ids=lambda v: repr(v) if not isinstance(v, str) else "",
)
def test_bad_parameters_are_named_by_every_entry_point(kwargs, message):
    pattern = re.escape(message)
    with pytest.raises(InitlabError, match=pattern):
        schemes.LooksLinear(**kwargs)
    t = torch.full((4, 4), float("nan"))
    with pytest.raises(InitlabError, match=pattern):
        I.looks_linear_(t, **kwargs)
    assert torch.isnan(t).all()  # nothing written before the error
    with pytest.raises(InitlabError, match=pattern):
        ni.looks_linear((4, 4), 0, **kwargs)


@pytest.mark.parametrize("gain", [0.0, -1.0, 3, np.float32(0.5)], ids=repr)
def test_any_finite_real_gain_is_accepted(gain):
    a = I.looks_linear_(torch.empty(4, 6, dtype=torch.float64), gain, generator=gen())[:2, :3]
    assert gram_error(a, float(gain)) <= 1e-12 * max(1.0, float(gain) ** 2)


def test_block_helper_refuses_non_specs_and_non_2d_shapes():
    with pytest.raises(TypeError, match="needs a LooksLinear spec, got Orthogonal"):
        schemes.looks_linear_block(schemes.Orthogonal(), (4, 4))
    with pytest.raises(InitlabError, match=re.escape("2-D (rows, cols) shape (a Linear weight), got 3 dims")):
        schemes.looks_linear_block(schemes.LooksLinear(), (4, 4, 3))


# ---- torch front end ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", list(TORCH_TOL), ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("mode", list(MODES))
def test_torch_structure_orthogonality_and_orthogonal_bits(mode, shape, dtype):
    mr, mc = MODES[mode]
    gain = 1.5
    w = torch.full(shape, float("nan"), dtype=dtype)
    out = I.looks_linear_(w, gain, mirror_rows=mr, mirror_cols=mc, generator=gen(7))
    assert out is w and w.shape == torch.Size(shape) and w.dtype == dtype
    rb, cb = block_shape(shape, mr, mc)
    a = w[:rb, :cb]
    # the mirror structure, bit for bit
    assert torch.equal(w, mirrored_torch(a, mr, mc))
    # A is exactly what orthogonal_ draws on an (rb, cb) tensor from the same generator state
    assert torch.equal(a, I.orthogonal_(torch.empty(rb, cb, dtype=dtype), gain, generator=gen(7)))
    assert gram_error(a, gain) <= TORCH_TOL[dtype] * gain**2


def test_torch_generator_state_advances_exactly_as_orthogonal():
    """Two looks-linear draws in a row use the generator as two orthogonal_ draws of the blocks."""
    g, h = gen(3), gen(3)
    first = I.looks_linear_(torch.empty(8, 6), generator=g)
    second = I.looks_linear_(torch.empty(8, 6), generator=g)
    assert torch.equal(first[:4, :3], I.orthogonal_(torch.empty(4, 3), generator=h))
    assert torch.equal(second[:4, :3], I.orthogonal_(torch.empty(4, 3), generator=h))
    assert not torch.equal(first, second)


def test_torch_same_seed_same_bits_and_global_rng_untouched():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    a = I.looks_linear_(torch.empty(10, 8), generator=gen(5))
    b = I.looks_linear_(torch.empty(10, 8), generator=gen(5))
    assert torch.equal(torch.rand(3), expected)  # the generator path never read the global RNG
    assert torch.equal(a, b)
    assert not torch.equal(a, I.looks_linear_(torch.empty(10, 8), generator=gen(6)))
    torch.manual_seed(5)
    assert torch.equal(I.looks_linear_(torch.empty(10, 8)), a)  # generator=None: the global one


def test_apply_spec_is_looks_linear_bitwise_and_per_chunk():
    spec = schemes.LooksLinear(2.0, mirror_cols=False)
    ours = I.apply_spec_(torch.empty(8, 5), spec, generator=gen())
    assert torch.equal(ours, I.looks_linear_(torch.empty(8, 5), 2.0, mirror_cols=False, generator=gen()))
    # packed weight, 3 chunks along dim 0: each (8, 6) chunk is its own looks-linear matrix
    w = I.apply_spec_(torch.empty(24, 6), schemes.LooksLinear(), generator=gen(), chunks=3)
    g = gen()
    blocks = []
    for chunk in w.split(8):
        a = chunk[:4, :3]
        assert torch.equal(chunk, mirrored_torch(a, True, True))
        assert torch.equal(a, I.orthogonal_(torch.empty(4, 3), generator=g))  # draws in chunk order
        blocks.append(a)
    assert not torch.equal(blocks[0], blocks[1])


def test_torch_non_contiguous_and_meta():
    base = torch.empty(6, 8)
    view = base.t()  # (8, 6), not contiguous
    I.looks_linear_(view, generator=gen())
    assert torch.equal(view, I.looks_linear_(torch.empty(8, 6), generator=gen()))
    meta = torch.empty(4, 6, device="meta")
    assert I.looks_linear_(meta) is meta
    assert I.apply_spec_(meta, schemes.LooksLinear()) is meta
    with pytest.raises(InitlabError, match="even dim 0"):
        I.looks_linear_(torch.empty(5, 6, device="meta"))  # shape errors do not depend on storage


def test_parameter_filled_in_place_without_autograd_history():
    lin = torch.nn.Linear(6, 8, bias=False)
    out = I.looks_linear_(lin.weight, generator=gen())
    assert out is lin.weight and out.requires_grad and out.grad_fn is None


# ---- NumPy front end ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", list(NUMPY_TOL), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("mode", list(MODES))
def test_numpy_structure_orthogonality_and_orthogonal_bits(mode, shape, dtype):
    mr, mc = MODES[mode]
    gain = 1.5
    w = ni.looks_linear(shape, 7, dtype, gain=gain, mirror_rows=mr, mirror_cols=mc)
    assert isinstance(w, np.ndarray) and w.shape == shape and w.dtype == dtype
    rb, cb = block_shape(shape, mr, mc)
    a = w[:rb, :cb]
    assert w.tobytes() == mirrored_numpy(a, mr, mc).tobytes()
    assert a.tobytes() == ni.orthogonal((rb, cb), 7, dtype, gain=gain).tobytes()
    assert gram_error(a, gain) <= NUMPY_TOL[dtype] * gain**2


def test_numpy_same_seed_same_bits_by_every_path():
    a = ni.looks_linear((12, 6), 1234)
    assert a.tobytes() == ni.looks_linear((12, 6), np.random.default_rng(1234)).tobytes()
    assert a.tobytes() != ni.looks_linear((12, 6), 1235).tobytes()
    g = np.random.default_rng(1234)
    first, second = ni.looks_linear((12, 6), g), ni.looks_linear((12, 6), g)
    assert first.tobytes() == a.tobytes() and second.tobytes() != first.tobytes()  # it advances


def test_sample_spec_is_looks_linear_bitwise_and_per_chunk():
    spec = schemes.LooksLinear(0.5, mirror_rows=False)
    got = ni.sample_spec(spec, (5, 8), 3, np.float64)
    assert got.tobytes() == ni.looks_linear((5, 8), 3, np.float64, gain=0.5, mirror_rows=False).tobytes()
    w = ni.sample_spec(schemes.LooksLinear(), (16, 4), 3, np.float64, chunks=2)
    g = np.random.default_rng(3)
    for chunk in np.split(w, 2):
        a = chunk[:4, :2]
        assert chunk.tobytes() == mirrored_numpy(a, True, True).tobytes()
        assert a.tobytes() == ni.orthogonal((4, 2), g, np.float64).tobytes()


# ---- the point of the scheme: a deep rectifier network is linear at init ----------------------------

# (name, activation, c) with phi(u) - phi(-u) = c u
ACTIVATIONS = [
    ("relu", torch.relu, 1.0),
    ("gelu", F.gelu, 1.0),
    ("gelu_tanh", lambda u: F.gelu(u, approximate="tanh"), 1.0),
    ("silu", F.silu, 1.0),
    ("softplus", F.softplus, 1.0),
    ("leaky_relu_0.2", lambda u: F.leaky_relu(u, 0.2), 1.2),
]


def looks_linear_mlp(widths: list[int], dtype, seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Weights of an MLP d_0 -> 2 d_1 -> ... -> 2 d_{L-1} -> d_L (rows-mirrored first layer,
    both-mirrored hidden layers, cols-mirrored head) and their orthogonal blocks A_l (d_l, d_{l-1})."""
    g = gen(seed)
    weights, blocks = [], []
    depth = len(widths) - 1
    for layer in range(depth):
        mr, mc = layer < depth - 1, layer > 0
        rows = widths[layer + 1] * (2 if mr else 1)
        cols = widths[layer] * (2 if mc else 1)
        w = I.looks_linear_(torch.empty(rows, cols, dtype=dtype), mirror_rows=mr, mirror_cols=mc, generator=g)
        weights.append(w)
        blocks.append(w[: widths[layer + 1], : widths[layer]])
    return weights, blocks


def forward(weights: list[torch.Tensor], x: torch.Tensor, phi) -> torch.Tensor:
    h = x
    for w in weights[:-1]:
        h = phi(h @ w.T)
    return h @ weights[-1].T


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-12), (torch.float32, 2e-5)], ids=str)
@pytest.mark.parametrize("name,phi,c", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_deep_mlp_is_the_product_of_the_blocks_at_init(name, phi, c, dtype, atol):
    widths = [12, 16, 16, 16, 16, 16, 10]  # 6 layers, 5 activations
    weights, blocks = looks_linear_mlp(widths, dtype, seed=11)
    x = torch.randn(32, widths[0], generator=gen(12), dtype=torch.float64)
    got = forward(weights, x.to(dtype), phi).double()
    linear = x.T
    for a in blocks:
        linear = a.double() @ linear
    expected = c ** (len(blocks) - 1) * linear.T
    assert torch.allclose(got, expected, atol=atol * c ** (len(blocks) - 1), rtol=0), (
        float((got - expected).abs().max())
    )
    # and the product of semi-orthogonal blocks keeps norms: 12 -> 16 -> ... -> 10 is an isometry
    # on the span it keeps, so |f(x)| <= c^(L-1) |x| with equality off the dropped directions
    assert bool((expected.norm(dim=1) <= c ** (len(blocks) - 1) * x.norm(dim=1) + 1e-9).all())


def test_nn_sequential_relu_net_is_linear_at_init_and_stops_being_so_after_one_step():
    torch.set_flush_denormal(True)
    d_in, width, d_out, depth = 8, 12, 4, 5
    layers: list[torch.nn.Module] = []
    for layer in range(depth):
        fan_in = d_in if layer == 0 else 2 * width
        fan_out = d_out if layer == depth - 1 else 2 * width
        lin = torch.nn.Linear(fan_in, fan_out, bias=True)
        mr, mc = layer < depth - 1, layer > 0
        I.looks_linear_(lin.weight, mirror_rows=mr, mirror_cols=mc, generator=gen(layer))
        torch.nn.init.zeros_(lin.bias)
        layers += [lin, torch.nn.ReLU()] if layer < depth - 1 else [lin]
    net = torch.nn.Sequential(*layers).double()
    x = torch.randn(64, d_in, generator=gen(99), dtype=torch.float64)
    with torch.no_grad():
        zeros = torch.zeros(64, d_out, dtype=torch.float64)
        assert torch.allclose(net(x) + net(-x), zeros, atol=1e-12, rtol=0)  # an odd (linear) map
    # one SGD step on a regression loss breaks the mirror symmetry (phi'(u) != phi'(-u))
    target = torch.randn(64, d_out, generator=gen(100), dtype=torch.float64)
    loss = ((net(x) - target) ** 2).mean()
    loss.backward()
    with torch.no_grad():
        for p in net.parameters():
            p -= 0.5 * p.grad
        oddness = float((net(x) + net(-x)).abs().max())
    assert oddness > 1e-3  # no longer a linear (odd) map


# ---- errors and corner cases ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, kwargs, message",
    [
        ((5, 6), {}, "mirror_rows=True needs an even dim 0 (rows), got 5 in shape (5, 6): use an even width "
                     "(4 or 6), or mirror_rows=False"),
        ((6, 7), {}, "mirror_cols=True needs an even dim 1 (cols), got 7 in shape (6, 7)"),
        ((7, 4), {"mirror_cols": False}, "needs an even dim 0 (rows), got 7"),
        ((4, 3), {"mirror_rows": False}, "needs an even dim 1 (cols), got 3"),
    ],
)
def test_odd_mirrored_dims_raise_naming_dim_size_and_fix(shape, kwargs, message):
    pattern = re.escape(message)
    t = torch.full(shape, float("nan"))
    with pytest.raises(InitlabError, match=pattern):
        I.looks_linear_(t, generator=gen(), **kwargs)
    assert torch.isnan(t).all()
    spec = schemes.LooksLinear(1.0, **kwargs)
    with pytest.raises(InitlabError, match=pattern):
        I.apply_spec_(t, spec, generator=gen())
    with pytest.raises(InitlabError, match=pattern):
        ni.looks_linear(shape, 0, **kwargs)
    with pytest.raises(InitlabError, match=pattern):
        ni.sample_spec(spec, shape, 0)


def test_an_unmirrored_dim_may_be_odd():
    w = I.looks_linear_(torch.empty(6, 5, dtype=torch.float64), mirror_cols=False, generator=gen())
    assert torch.equal(w, mirrored_torch(w[:3], True, False))
    v = ni.looks_linear((3, 8), 0, np.float64, mirror_rows=False)
    assert v.tobytes() == mirrored_numpy(v[:, :4], False, True).tobytes()


def test_odd_chunk_is_refused_before_any_draw():
    g = gen(4)
    state = g.get_state()
    with pytest.raises(InitlabError, match=re.escape("even dim 0 (rows), got 3 in shape (3, 4)")):
        I.apply_spec_(torch.empty(6, 4), schemes.LooksLinear(), generator=g, chunks=2)
    assert torch.equal(g.get_state(), state)
    with pytest.raises(InitlabError, match=re.escape("got 3 in shape (3, 4)")):
        ni.sample_spec(schemes.LooksLinear(), (6, 4), 0, chunks=2)


@pytest.mark.parametrize("shape", [(), (8,), (4, 4, 3), (8, 4, 3, 3)], ids=str)
def test_non_2d_tensors_raise_with_the_dims_needed(shape):
    ndim = len(shape)
    with pytest.raises(
        InitlabError,
        match=re.escape(f"looks_linear_ needs a tensor with 2 dimensions (a Linear weight), got {ndim} "),
    ):
        I.looks_linear_(torch.empty(shape))
    with pytest.raises(InitlabError, match=re.escape(f"2 dimensions (a Linear weight), got {ndim} ")):
        I.apply_spec_(torch.empty(shape), schemes.LooksLinear())
    with pytest.raises(
        InitlabError,
        match=re.escape(f"looks_linear needs a shape with 2 dimensions (a Linear weight), got {ndim} "),
    ):
        ni.looks_linear(shape)
    with pytest.raises(InitlabError, match=re.escape(f"2 dimensions (a Linear weight), got {ndim} ")):
        ni.sample_spec(schemes.LooksLinear(), shape)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool], ids=str)
def test_integer_tensor_is_a_type_error(dtype):
    with pytest.raises(TypeError, match=str(dtype).replace("torch.", "")):
        I.looks_linear_(torch.zeros(4, 4, dtype=dtype))
    with pytest.raises(TypeError, match="looks_linear samples floating-point arrays, got dtype int32"):
        ni.looks_linear((4, 4), 0, np.int32)


@pytest.mark.parametrize("shape", [(0, 4), (4, 0), (3, 0), (0, 0)], ids=str)
def test_zero_element_tensor_warns_and_is_unchanged_like_orthogonal(shape):
    """As orthogonal_ (and the chunks check) the zero-element warning comes before divisibility:
    an empty tensor has nothing to mirror, so (3, 0) warns instead of raising."""
    t = torch.empty(shape)
    with pytest.warns(UserWarning, match=re.escape(f"Initializing zero-element tensors is a no-op "
                                                   f"(looks_linear_ on shape {shape})")) as record:
        out = I.looks_linear_(t, generator=gen())
    assert out is t and out.shape == torch.Size(shape)
    assert record[0].filename == __file__  # the warning points at the caller
    with pytest.warns(UserWarning, match="zero-element"):
        I.orthogonal_(torch.empty(shape))  # the behaviour it copies
    with pytest.warns(UserWarning, match="zero-element"):
        assert I.apply_spec_(t, schemes.LooksLinear()) is t
    with pytest.warns(UserWarning, match=re.escape(f"looks_linear: a zero-element shape {shape}")) as record:
        w = ni.looks_linear(shape, 0)
    assert w.shape == shape and w.dtype == np.float32
    assert record[0].filename == __file__
    with pytest.warns(UserWarning, match="zero-element"):
        assert ni.sample_spec(schemes.LooksLinear(), shape, 0).shape == shape


def test_signatures():
    import inspect

    torch_params = inspect.signature(I.looks_linear_).parameters
    assert list(torch_params) == ["tensor", "gain", "mirror_rows", "mirror_cols", "generator"]
    assert all(torch_params[n].kind is inspect.Parameter.KEYWORD_ONLY
               for n in ("mirror_rows", "mirror_cols", "generator"))
    np_params = inspect.signature(ni.looks_linear).parameters
    assert list(np_params) == ["shape", "rng", "dtype", "gain", "mirror_rows", "mirror_cols"]
    assert np_params["dtype"].default is np.float32 and np_params["gain"].default == 1.0
    assert math.isclose(torch_params["gain"].default, 1.0)
