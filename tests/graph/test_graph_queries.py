"""Graph queries on hand-built graphs: producers, consumers, the nonlinearity walks, residual sums."""

from __future__ import annotations

from initlab.graph import (
    Graph,
    Kind,
    consumers,
    consuming_activation,
    feeding_activation,
    layers,
    producer_layers,
    producers,
    residual_adds,
)
from initlab.graph.queries import ancestors, swish

L, A = Kind.LAYER, Kind.ACTIVATION


def chain(*steps):
    """A graph ``input -> steps... -> output``; each step is ``(kind, op[, extra fields])`` fed by
    the previous node."""
    g = Graph()
    g.add(Kind.INPUT, "input")
    for kind, op, *extra in steps:
        g.add(kind, op, [len(g) - 1], **(extra[0] if extra else {}))
    g.add(Kind.OUTPUT, "output", [len(g) - 1])
    return g


def test_walks_through_pass_nodes():
    g = chain((L, "Linear", {"module": "a"}), (Kind.DROPOUT, "Dropout"), (Kind.RESHAPE, "view"),
              (Kind.POOL, "mean"), (L, "Linear", {"module": "b"}))
    assert [n.id for n in producers(g, 5)] == [1] and [n.id for n in producer_layers(g, 5)] == [1]
    assert [n.id for n in consumers(g, 1)] == [5]
    assert producer_layers(g, 1) == []  # the input is no layer
    assert list(layers(g)) == ["a", "b"]


def test_consuming_activation_through_norm_add_concat():
    g = chain((L, "Conv2d"), (Kind.NORM, "BatchNorm2d"), (Kind.ADD, "add"), (Kind.CONCAT, "cat"),
              (A, "ReLU", {"activation": ("relu", None)}))
    found = consuming_activation(g, 1)
    assert found.activation == ("relu", None) and found.node.id == 5 and found.via == (2, 3, 4)
    # backwards, a norm stops the walk: the layer after a norm is fed "linearly"
    g2 = chain((A, "Tanh", {"activation": ("tanh", None)}), (Kind.NORM, "LayerNorm"), (L, "Linear"))
    assert feeding_activation(g2, 3) is None
    g3 = chain((A, "Tanh", {"activation": ("tanh", None)}), (Kind.DROPOUT, "Dropout"), (L, "Linear"))
    assert feeding_activation(g3, 3).activation == ("tanh", None)


def test_products_and_other_ops_end_the_walk():
    for kind in (Kind.MUL, Kind.SCALE, L, Kind.ATTENTION, Kind.OTHER):
        g = chain((L, "Linear"), (kind, "x"), (A, "ReLU", {"activation": ("relu", None)}))
        assert consuming_activation(g, 1) is None


def test_measured_activation_is_reported_with_its_function():
    g = chain((L, "Linear"), (A, "Mine", {"activation": ("measured", None), "fn": abs}))
    found = consuming_activation(g, 1)
    assert found.activation == ("measured", None) and found.node.fn is abs


def test_swish_by_hand():
    g = Graph()
    x = g.add(Kind.INPUT, "input")
    h = g.add(L, "Linear", [x.id])
    s = g.add(A, "sigmoid", [h.id], activation=("sigmoid", None))
    m = g.add(Kind.MUL, "mul", [h.id, s.id])
    out = g.add(L, "Linear", [m.id])
    assert swish(g, m.id) == "silu"
    assert consuming_activation(g, h.id).activation == ("silu", None)
    assert feeding_activation(g, out.id).activation == ("silu", None)
    # a sigmoid gating another tensor stays a sigmoid (squeeze-and-excitation)
    g2 = Graph()
    x = g2.add(Kind.INPUT, "input")
    h = g2.add(L, "Linear", [x.id])
    s = g2.add(A, "sigmoid", [h.id], activation=("sigmoid", None))
    g2.add(Kind.MUL, "mul", [x.id, s.id])
    assert swish(g2, 3) is None and consuming_activation(g2, h.id).activation == ("sigmoid", None)


def residual_graph():
    """x -> a -> relu -> b -> (+ x) ; y = proj(z) + c(z) ; z = the first sum ; tok + pos ; q*cos + q*sin."""
    g = Graph()
    x = g.add(Kind.INPUT, "input").id
    a = g.add(L, "Linear", [x], module="a").id
    r = g.add(A, "relu", [a], activation=("relu", None)).id
    b = g.add(L, "Linear", [r], module="b").id
    z = g.add(Kind.ADD, "add", [x, b]).id  # identity shortcut, skip first
    c = g.add(L, "Linear", [z], module="c").id
    p = g.add(L, "Linear", [z], module="proj").id
    y = g.add(Kind.ADD, "add", [c, p]).id  # both have one layer: the earlier one is the skip
    pos = g.add(Kind.PARAM, "parameter", params={"name": "pos"}).id
    e = g.add(Kind.ADD, "add", [y, pos]).id  # + a parameter: not residual
    k = g.add(Kind.CONSTANT, "arange").id
    w = g.add(L, "Embedding", [k], module="wpe").id
    t = g.add(Kind.ADD, "add", [e, w]).id  # + a position embedding: the common ancestor is no data
    cos = g.add(Kind.MUL, "mul", [t, k]).id
    sin = g.add(Kind.MUL, "mul", [t, k]).id
    rope = g.add(Kind.ADD, "add", [cos, sin]).id  # no layer on either path
    twice = g.add(Kind.ADD, "add", [rope, rope]).id
    g.add(Kind.OUTPUT, "output", [twice])
    return g


def test_residual_adds():
    g = residual_graph()
    first, second = residual_adds(g)
    assert (first.add, first.skip, first.branch, first.fork) == (4, 0, 3, 0)
    assert (first.layers, first.skip_layers) == ((1, 3), ())
    assert (second.add, second.fork, len(second.layers), len(second.skip_layers)) == (7, 4, 1, 1)
    assert {second.skip, second.branch} == {5, 6}


def test_ancestors_bitsets():
    g = chain((L, "Linear"), (A, "ReLU"))
    anc = ancestors(g)
    assert anc == [0, 0b1, 0b11, 0b111]
