"""Transforms and residual-family schemes on the modules reviewers tried: attention, PReLU and GRU
branch ends, stacked transforms, padded branches."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from initlab import init_model
from initlab.errors import InitlabError
from initlab.transforms import add_fixup_scalars, add_skip_gates


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


class _AttnBlock(nn.Module):
    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.inp, self.head = nn.Linear(8, d), nn.Linear(d, 3)
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        h = h + self.attn(h, h, h, need_weights=False)[0]
        return self.head(h)


class _PReLUBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.act, self.out = nn.Linear(8, 8), nn.PReLU(), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x + self.act(self.fc(x)))


class _GRUBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb, self.gru, self.head = nn.Linear(4, 8), nn.GRU(8, 8, batch_first=True), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.emb(x)
        return self.head(h[:, -1] + self.gru(h)[1][-1])


def test_transform_scalars_get_their_values_on_modules_with_their_own_handler():
    model = _AttnBlock()
    add_fixup_scalars(model, verbose=False)
    plan = init_model(model, "fixup", generator=_gen())
    assert float(model.attn.fixup_scale) == 1.0 and plan["attn.fixup_scale"].scheme == "ones"
    model = _PReLUBranch()  # PReLU's handler sets its slope: the gate is still the transform's 0
    add_skip_gates(model, verbose=False)
    plan = init_model(model, "skipinit", generator=_gen())
    assert float(model.act.skip_gate) == 0.0 and plan["act.skip_gate"].scheme == "zeros"


def test_a_gate_on_a_tuple_output_gates_the_element_the_add_reads():
    torch.manual_seed(0)
    model = _GRUBranch()
    add_skip_gates(model, verbose=False)
    init_model(model, "skipinit", generator=_gen())
    x = torch.randn(3, 5, 4)
    with torch.no_grad():
        h = model.emb(x)
        assert torch.equal(model(x), model.head(h[:, -1] + 0.0 * h[:, -1]))


def test_transforms_do_not_stack_and_fixup_refuses_gates():
    model = _PReLUBranch()
    report = add_skip_gates(model, verbose=False)
    with pytest.raises(InitlabError, match="already transformed"):
        add_fixup_scalars(model, verbose=False)
    with pytest.raises(InitlabError, match="SkipInit gates"):
        init_model(model, "fixup", generator=_gen())
    report.undo()
    assert add_skip_gates(model, verbose=False).added == ["act.skip_gate"]  # after undo: allowed again


def test_a_padded_branch_end_is_not_gated_through_the_pad():
    class Padded(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.pad = nn.Conv2d(2, 2, 3), nn.ConstantPad2d(1, 1.0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.pad(self.conv(x))

    model = Padded()
    add_skip_gates(model, verbose=False)  # the gate sits after the pad, on the pad module itself
    init_model(model, "skipinit", generator=_gen())
    x = torch.randn(1, 2, 6, 6)
    with torch.no_grad():
        assert torch.equal(model(x), x)
