"""Moments through recurrent layers: the Elman RNN's mean-field recursion and the two-step mean field
of LSTM / GRU gates, registered into :data:`initlab.graph.moments.LAYER_RULES` (``"RNN"``, ``"LSTM"``,
``"GRU"``) when this module is imported (``initlab.graph.moments`` imports it)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from initlab.gains import activation_values, gaussian_rule
from initlab.graph.layer_stats import RNN_GATES, LayerStats
from initlab.graph.moments import (
    LAYER_RULES,
    Moments,
    MomentsUnknown,
    PropagationContext,
    _activation,
    _mix,
    _seq_len,
    dense_moments,
)
from initlab.graph.nodes import Node

__all__: list[str] = []  # rules only: reached through LAYER_RULES (and re-exported by moments)


# ---- Elman RNN: a mean-field recursion ----------------------------------------------------------------


def _rnn_direction(
    node: Node, ctx: PropagationContext, x: Moments, sfx: str, act: str, steps: int | None
) -> Moments:
    pre_x = dense_moments(x, ctx.stats(node, "ih" + sfx, x))
    h = _activation((act, None), None, pre_x)  # the hidden state after the first step (h_0 = 0)
    hh = ctx.stats(node, "hh" + sfx, h)
    hs = [h]
    for _ in range(1, steps or 1000):
        rec = dense_moments(h, hh)
        pre = Moments(
            pre_x.mean + rec.mean,
            pre_x.second + rec.second + 2 * pre_x.mean * rec.mean,
            pre_x.cross + rec.cross + 2 * pre_x.mean * rec.mean,
        )  # type: ignore[operator]
        if pre.second > 1e30:
            raise MomentsUnknown(f"{node.op}: the recurrent state diverges")
        h_new = _activation((act, None), None, pre)
        converged = abs(h_new.second - h.second) < 1e-10 and abs(h_new.cross - h.cross) < 1e-10  # type: ignore[operator]
        h = h_new
        hs.append(h)
        if steps is None and converged:
            return h
    return _mix(hs, [1.0] * len(hs)) if steps else h


def _rnn_layer(node: Node, ctx: PropagationContext) -> Moments:
    """Elman RNN, mean field: ``q`` of ``h_t = phi(W_ih x_t + W_hh h_{t-1} + b)`` iterated from ``h_0 = 0``
    with ``W_hh`` treated as fresh at each step (a tanh-bounded state), averaged over the ``L`` steps of
    the input (the fixed point without a shape); directions averaged, layers stacked. The ``hh`` part's
    callback sees ``h_1`` (after one step). LSTM / GRU: :func:`_gated_rnn`."""
    x = ctx.input(node)
    act = ctx.attr(node, "nonlinearity", "tanh")
    layers, bidir = ctx.attr(node, "num_layers", 1), ctx.attr(node, "bidirectional", False)
    steps = _seq_len(ctx, node, 0)
    for layer in range(layers):
        sfxs = [f"_l{layer}"] + ([f"_l{layer}_reverse"] if bidir else [])
        x = _mix([_rnn_direction(node, ctx, x, s, act, steps) for s in sfxs], [1.0] * len(sfxs))
    return x


# ---- gated recurrent layers: a two-step mean field --------------------------------------------------

_N_PAIR = 40  # Gauss–Hermite order per axis of the two-step expectations
_STATIONARY = 64  # steps run when the sequence length is unknown; the second half is reported


class _Seq:
    """A per-unit process over steps ``0..L`` (step 0: the zero initial state): means ``m[t]`` and
    pairwise second moments ``S[t, s] = E[x_t x_s]`` (same unit, same example), filled a row per step."""

    def __init__(self, steps: int) -> None:
        self.m, self.S = np.zeros(steps + 1), np.zeros((steps + 1, steps + 1))

    def set_row(self, t: int, mean: float, row: np.ndarray) -> None:
        """Step ``t``: its mean and ``E[x_t x_s]`` for ``s = 1..t``."""
        self.m[t] = mean
        self.S[t, 1 : t + 1] = self.S[1 : t + 1, t] = row

    @classmethod
    def exchangeable(cls, x: Moments, steps: int) -> _Seq:
        """``steps`` positions of ``x``: ``E[x_t x_s] = cross`` for ``t != s``, ``second`` on the diagonal."""
        seq = cls(steps)
        seq.m[1:], seq.S[1:, 1:] = x.mean, x.cross
        seq.S[range(1, steps + 1), range(1, steps + 1)] = x.second
        return seq

    def dense(self, st: LayerStats) -> _Seq:
        """``W x + b`` at every step (``st`` as in :func:`dense_moments`)."""
        out = _Seq(len(self.m) - 1)
        out.m[1:] = st.fan_in * st.weight_mean * self.m[1:] + st.bias_mean
        out.S[1:, 1:] = _pair_dense(st, self.m[1:, None], self.m[None, 1:], self.S[1:, 1:])
        return out

    @classmethod
    def average(cls, seqs: list[_Seq]) -> _Seq:
        """Units pooled from ``seqs`` in equal numbers (the two directions' concatenated halves)."""
        out = cls(len(seqs[0].m) - 1)
        out.m, out.S = np.mean([s.m for s in seqs], 0), np.mean([s.S for s in seqs], 0)
        return out

    def reversed(self) -> _Seq:
        out = _Seq(len(self.m) - 1)
        out.m[1:], out.S[1:, 1:] = self.m[:0:-1], self.S[:0:-1, :0:-1]
        return out

    def summary(self, first: int = 1) -> Moments:
        """Moments pooled over steps ``first..L``: mean, ``q``, ``cross`` over pairs of different steps."""
        m, sq = self.m[first:], self.S[first:, first:]
        k, mean = len(m), float(m.mean())
        cross = float(sq.sum() - np.trace(sq)) / (k * (k - 1)) if k > 1 else mean**2
        q = float(np.trace(sq)) / k
        return Moments(mean, q, min(max(cross, mean**2), q))


def _pair_dense(st: LayerStats, m_t: Any, m_s: Any, q_ts: Any) -> Any:
    """:func:`dense_moments`'s second moment for two steps: ``E[y_t y_s]`` from ``E[x_t x_s] = q_ts``."""
    n, wm = st.fan_in, st.weight_mean
    wv = st.weight_second - wm**2
    return (
        n * wv * q_ts
        + wm**2 * (n * q_ts + n * (n - 1) * m_t * m_s)
        + n * wm * st.bias_mean * (m_t + m_s)
        + st.bias_second
    )


def _pair_activation(name: str, x: _Seq, t: int) -> tuple[float, np.ndarray]:
    r"""``E[phi(x_t)]`` and ``E[phi(x_t) phi(x_s)]`` (``s = 1..t``) for jointly Gaussian ``x_t, x_s``:
    ``x_t = m_t + sigma_t z_1``, ``x_s = m_s + beta z_1 + gamma z_2`` (``beta = cov / sigma_t``,
    ``gamma^2 = var_s - beta^2``), a tensor-product Gauss–Hermite rule (``phi`` smooth: sigmoid, tanh)."""
    z, w = gaussian_rule(_N_PAIR)
    q, m_s, m_t = np.diag(x.S)[1 : t + 1], x.m[1 : t + 1], x.m[t]
    sd = math.sqrt(max(q[-1] - m_t**2, 0.0))
    beta = (x.S[t, 1 : t + 1] - m_t * m_s) / sd if sd > 0 else np.zeros(t)
    gamma = np.sqrt(np.maximum(q - m_s**2 - beta**2, 0.0))
    fa = activation_values(name, m_t + sd * z)
    xs = m_s[:, None, None] + beta[:, None, None] * z[None, :, None] + gamma[:, None, None] * z[None, None, :]
    return float(w @ fa), (activation_values(name, xs) @ w) @ (w * fa)


_Side = tuple[float, np.ndarray, np.ndarray]  # a term's mean at t, its means at s = 1..t, E[._t ._s]


class _GatedScan:
    """The two-step mean field of one direction of one LSTM / GRU layer (:func:`_gated_rnn`), step by
    step: ``side[g]`` is the input side ``W_ih[g] x + b`` of gate ``g``'s pre-activation at every step."""

    def __init__(self, mode: str, side: Mapping[str, _Seq], steps: int, hr: LayerStats | None) -> None:
        self.mode, self.side, self.hr = mode, side, hr
        self.pre, self.val = ({g: _Seq(steps) for g in side} for _ in range(2))
        self.u, self.h, self.c, self.tanh_c = (_Seq(steps) for _ in range(4))
        self.keep = np.zeros(steps + 1)  # E[f_t] (LSTM) / E[z_t] (GRU): the share of the state kept

    def step(self, t: int, hh: Mapping[str, LayerStats] | None) -> None:
        """Fill step ``t`` (``hh`` ``None``: no recurrent side, for a first look at ``h_1``)."""
        rec = {g: self._recurrent(hh[g] if hh is not None else None, t) for g in self.side}
        if self.mode == "LSTM":
            i, f, g, o = (self._gate(k, t, rec[k], "tanh" if k == "g" else "sigmoid") for k in "ifgo")
            self._cell(t, i, f, g)
            self._output(t, o.m[t] * self.tanh_c.m[t], o.S[t, 1 : t + 1] * self.tanh_c.S[t, 1 : t + 1])
        else:
            r, z = (self._gate(k, t, rec[k], "sigmoid") for k in "rz")
            rho_t, rho_s, rho_ts = rec["n"]  # r * (W_hn h + b_hn): independent factors
            gated = (r.m[t] * rho_t, r.m[1 : t + 1] * rho_s, r.S[t, 1 : t + 1] * rho_ts)
            self._update(t, z, self._gate("n", t, gated, "tanh"))

    def _recurrent(self, st: LayerStats | None, t: int) -> _Side:
        """``W_hh[g] h_{t-1} + b``: its mean at ``t``, at ``s = 1..t`` and ``E[._t ._s]``."""
        if st is None:
            return 0.0, np.zeros(t), np.zeros(t)
        h = self.h
        mean = st.fan_in * st.weight_mean * h.m[:t] + st.bias_mean
        return float(mean[-1]), mean, _pair_dense(st, h.m[t - 1], h.m[:t], h.S[t - 1, :t])

    def _gate(self, g: str, t: int, rec: _Side, act: str) -> _Seq:
        """Gate ``g`` at step ``t``: pre-activation = input side + ``rec`` (independent), then ``act``."""
        x, (r_t, r_s, r_ts) = self.side[g], rec
        row = x.S[t, 1 : t + 1] + r_ts + x.m[t] * r_s + r_t * x.m[1 : t + 1]
        self.pre[g].set_row(t, x.m[t] + r_t, row)
        self.val[g].set_row(t, *_pair_activation(act, self.pre[g], t))
        return self.val[g]

    def _cell(self, t: int, i: _Seq, f: _Seq, g: _Seq) -> None:
        """``c_t = f_t c_{t-1} + u_t`` (``u = i g``), ``f_t`` independent of the rest and of other steps:
        ``E[c_t c_s] = E[f_t] E[c_{t-1} c_s] + E[u_t c_s]`` (``s < t``),
        ``E[u_t c_s] = E[f_s] E[u_t c_{s-1}] + E[u_t u_s]``."""
        u = i.S[t, 1 : t + 1] * g.S[t, 1 : t + 1]
        self.keep[t] = f.m[t]
        v = np.zeros(t)  # v[s] = E[u_t c_s], s = 0..t-1
        for s in range(1, t):
            v[s] = self.keep[s] * v[s - 1] + u[s - 1]
        c = self.c
        diag = f.S[t, t] * c.S[t - 1, t - 1] + 2 * f.m[t] * v[t - 1] + u[-1]
        c.set_row(t, f.m[t] * c.m[t - 1] + i.m[t] * g.m[t], np.append(f.m[t] * c.S[t - 1, 1:t] + v[1:], diag))
        self.tanh_c.set_row(t, *_pair_activation("tanh", c, t))

    def _update(self, t: int, z: _Seq, n: _Seq) -> None:
        """``h_t = (1 - z_t) n_t + z_t h_{t-1}``, ``z_t`` independent of the rest and of other steps."""
        zm, z2, h = z.m[t], z.S[t, t], self.h
        self.keep[t] = zm
        w = np.zeros(t)  # w[s] = E[n_t h_s], s = 0..t-1
        for s in range(1, t):
            w[s] = (1 - self.keep[s]) * n.S[t, s] + self.keep[s] * w[s - 1]
        diag = (1 - 2 * zm + z2) * n.S[t, t] + 2 * (zm - z2) * w[t - 1] + z2 * h.S[t - 1, t - 1]
        row = np.append((1 - zm) * w[1:] + zm * h.S[t - 1, 1:t], diag)
        self._output(t, (1 - zm) * n.m[t] + zm * h.m[t - 1], row)

    def _output(self, t: int, mean: float, row: np.ndarray) -> None:
        """``h_t`` (through an LSTM's projection ``"hr"`` when there is one)."""
        self.u.set_row(t, mean, row)
        if self.hr is None:
            self.h.set_row(t, mean, row)
        else:
            st, u = self.hr, self.u
            h_mean = st.fan_in * st.weight_mean * mean + st.bias_mean
            self.h.set_row(t, h_mean, _pair_dense(st, mean, u.m[1 : t + 1], row))


def _gated_direction(node: Node, ctx: PropagationContext, mode: str, sfx: str, x: _Seq) -> _Seq:
    """One direction of one gated layer: its parts from the callback (``x``'s summary for the ``ih``
    gates, ``h_1`` without recurrent biases for ``hr`` and the ``hh`` gates), then the scan."""
    steps, gates, xm = len(x.m) - 1, RNN_GATES[mode], x.summary()
    side = {g: x.dense(ctx.stats(node, f"ih{sfx}:{g}", xm)) for g in gates}
    first = _GatedScan(mode, side, steps, None)
    first.step(1, None)
    u1 = Moments(first.u.m[1], first.u.S[1, 1])
    hr = ctx.stats(node, f"hr{sfx}", u1) if (ctx.attr(node, "proj_size", 0) or 0) > 0 else None
    h1 = dense_moments(u1, hr) if hr is not None else u1
    hh = {g: ctx.stats(node, f"hh{sfx}:{g}", h1) for g in gates}
    scan = _GatedScan(mode, side, steps, hr)
    for t in range(1, steps + 1):
        scan.step(t, hh)
    return scan.h


def _gated_rnn(node: Node, ctx: PropagationContext) -> Moments:
    r"""LSTM / GRU: a mean field over pairs of steps.

    Gate ``g``'s pre-activation ``a_t = W_ih[g] x_t + W_hh[g] h_{t-1} + b_ih[g] + b_hh[g]`` (from its own
    parts ``"ih_l0:g"``, ``"hh_l0:g"``, torch's gate order :data:`RNN_GATES`: an LSTM's forget bias 1 is
    a mean, not a spread) is Gaussian per unit and jointly over steps, ``E[a_t a_s]`` following from the
    input's and ``h``'s ``E[x_t x_s]``; each gate's ``E[phi(a_t)]`` and ``E[phi(a_t) phi(a_s)]`` by
    bivariate quadrature; then, from ``h_0 = c_0 = 0``,

    .. math::
        c_t = f_t c_{t-1} + i_t g_t, \quad h_t = o_t \tanh c_t \quad \text{(LSTM)}

        n_t = \tanh(W_{in} x_t + b_{in} + r_t (W_{hn} h_{t-1} + b_{hn})), \quad
        h_t = (1 - z_t) n_t + z_t h_{t-1} \quad \text{(GRU)}

    Assumed: the gates independent of each other (different weight rows); the kept share ``f_t`` /
    ``z_t`` independent of the state and across steps (the other gates keep their correlation across
    steps, so a slow input adds up coherently in ``c``); ``c_t`` (LSTM) and ``n_t``'s pre-activation
    (GRU) Gaussian. The input is exchangeable over its ``L`` positions (its ``cross``); inside the
    module each layer hands the next its full ``E[h_t h_s]``; directions averaged (their halves are
    concatenated); inter-layer dropout scales ``q`` in train mode; an LSTM projection (``"hr_l0"``)
    maps ``h``. Reported: mean and ``q`` over the ``L`` steps, ``cross`` over pairs of different steps
    (``L`` unknown: steps 33-64 of 64, the stationary regime). The ``hh`` and ``hr`` parts' callback
    sees ``h_1`` without the recurrent biases. Measured against ``nn.LSTM`` / ``nn.GRU`` (width 256-1024,
    16 steps), the assumptions cost up to 1% of ``q`` for one layer, 2.3% for two stacked.
    """
    mode = str(ctx.attr(node, "mode", node.op))
    if mode not in RNN_GATES:
        raise MomentsUnknown(f"{node.op}: unknown gated mode {mode!r}")
    x, steps = ctx.input(node), _seq_len(ctx, node, 0)
    if steps is None:
        ctx.note(node, f"sequence length unknown: steps {_STATIONARY // 2 + 1}-{_STATIONARY} (stationary)")
    seq = _Seq.exchangeable(x, steps or _STATIONARY)
    layers, bidir = ctx.attr(node, "num_layers", 1), ctx.attr(node, "bidirectional", False)
    p = float(ctx.attr(node, "dropout", 0.0) or 0.0)
    for layer in range(layers):
        if layer and ctx.train and p > 0:
            seq.S[np.diag_indices_from(seq.S)] /= 1.0 - p
        outs = [_gated_direction(node, ctx, mode, f"_l{layer}", seq)]
        if bidir:
            outs.append(_gated_direction(node, ctx, mode, f"_l{layer}_reverse", seq.reversed()).reversed())
        seq = _Seq.average(outs)
    return seq.summary(1 if steps else _STATIONARY // 2 + 1)



LAYER_RULES.update({"RNN": _rnn_layer, "LSTM": _gated_rnn, "GRU": _gated_rnn})
