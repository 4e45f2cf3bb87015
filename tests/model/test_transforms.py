"""Model transforms: skip gates (SkipInit / ReZero) and Fixup scalars. At init every residual branch
contributes exactly 0, so the model computes its shortcut path (recomputed by hand here); every
transform is undone bit for bit; models without residual branches, or branches a scalar cannot sit
on, are refused. Seeded, CPU, exact equality (same ops on the same inputs)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab import zoo
from initlab.errors import InitlabError
from initlab.graph import residual_adds, trace
from initlab.transforms import (
    FIXUP_SCALE,
    SKIP_GATE,
    add_fixup_scalars,
    add_skip_gates,
    gated_modules,
)


class Block(nn.Module):
    """``x + 0.5 * dropout(fc2(relu(fc1(x))))``: a dropout and a constant scale after the last layer."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc1, self.fc2, self.drop = nn.Linear(d, d), nn.Linear(d, d), nn.Dropout(0.1)

    def forward(self, x):
        return x + self.drop(self.fc2(F.relu(self.fc1(x)))) * 0.5


class ResMLP(nn.Module):
    """Two residual blocks between an input layer and a classifier."""

    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.inp, self.blocks, self.head = nn.Linear(4, d), nn.Sequential(Block(d), Block(d)), nn.Linear(d, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.blocks(self.inp(x))))

    def shortcut(self, x):
        """The function of the model with every branch replaced by 0."""
        return self.head(torch.tanh(self.inp(x)))


class FunctionalEnd(nn.Module):
    """A branch that ends in a function: no module for a gate."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return x + F.relu(self.fc(x))


def resnet_shortcut(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """:class:`initlab.zoo.ResNet` with every branch replaced by 0: ``relu(0 + shortcut(h))`` per block."""
    h = F.relu(m.bn(m.stem(x)))
    for block in m.blocks:
        h = F.relu(block.shortcut(h))
    return m.head(F.adaptive_avg_pool2d(h, 1).flatten(1))


def build(name: str) -> nn.Module:
    return ResMLP().eval() if name == "resmlp" else zoo.build(name, width=16)


def inputs(name: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    return torch.randn(5, 4, generator=g) if name == "resmlp" else torch.randn(2, 3, 16, 16, generator=g)


def shortcut(name: str, m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return m.shortcut(x) if name == "resmlp" else resnet_shortcut(m, x)


def outputs_of(model: nn.Module, qualnames: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each module's output after every hook (ours are registered first), on one forward of ``x``."""
    seen: dict[str, torch.Tensor] = {}
    handles = [model.get_submodule(q).register_forward_hook(
        lambda mod, a, out, q=q: seen.__setitem__(q, out.detach().clone())) for q in qualnames]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


def zero_branch_ends(model: nn.Module) -> None:
    """Fixup's zero init of each branch's last layer (the one holding ``fixup_scale``)."""
    with torch.no_grad():
        for q, held in gated_modules(model).items():
            if FIXUP_SCALE in held:
                m = model.get_submodule(q)
                m.weight.zero_()
                if m.bias is not None:
                    m.bias.zero_()


@pytest.mark.parametrize("name", ["resmlp", "resnet20_nonorm", "resnet20"])
def test_skip_gates_leave_the_shortcut_path(name):
    model = build(name)
    x = inputs(name)
    report = add_skip_gates(model, verbose=False)
    assert len(report.branches) == len(residual_adds(trace(copy.deepcopy(model)))) > 0
    assert all(n.endswith("." + SKIP_GATE) for n in report.added)
    for n in report.added:
        gate = model.get_parameter(n)
        assert gate.shape == () and gate.item() == 0.0 and gate.dtype == torch.float32
    ends = [b.end for b in report.branches]
    for q, out in outputs_of(model, ends, x).items():
        assert not out.any(), f"branch end {q} is not exactly 0"
    with torch.no_grad():
        assert torch.equal(model(x), shortcut(name, model, x))


def test_skip_gates_pick_the_module_nearest_the_add():
    report = add_skip_gates(ResMLP(), verbose=False)
    assert report.added == ["blocks.0.drop.skip_gate", "blocks.1.drop.skip_gate"]
    assert report.branches[0].modules == ("blocks.0.fc1", "blocks.0.fc2", "blocks.0.drop")
    nonorm = add_skip_gates(zoo.build("resnet20_nonorm", width=16), verbose=False)
    assert nonorm.added[0] == "blocks.0.bn2.skip_gate"  # the Identity standing in for the norm


@pytest.mark.parametrize("name", ["resmlp", "resnet20_nonorm"])
def test_fixup_scalars_with_zeroed_branch_ends_leave_the_shortcut_path(name):
    model = build(name)
    x = inputs(name)
    report = add_fixup_scalars(model, verbose=False)
    for n in report.added:
        p = model.get_parameter(n)
        assert p.shape == () and p.item() == (1.0 if n.endswith(FIXUP_SCALE) else 0.0)
    assert "head.fixup_bias_in" in report.added  # the classifier
    zero_branch_ends(model)
    for q, out in outputs_of(model, [b.end for b in report.branches], x).items():
        assert not out.any(), f"branch end {q} is not exactly 0"
    with torch.no_grad():
        assert torch.equal(model(x), shortcut(name, model, x))


def test_fixup_scalars_compute_fixups_formula():
    """``scale * fc2(h + b_in) + b_out`` on the branch end, ``head(x + b_in)`` on the classifier."""
    model, x = ResMLP().eval(), inputs("resmlp")
    add_fixup_scalars(model, verbose=False)
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            if p.ndim == 0:
                p.fill_(0.25 + 0.125 * i)
        got = model(x)
        h = model.inp(x)
        for b in model.blocks:
            u = F.linear(h + b.fc1.fixup_bias_in, b.fc1.weight, b.fc1.bias) + b.fc1.fixup_bias_out
            v = F.linear(F.relu(u) + b.fc2.fixup_bias_in, b.fc2.weight, b.fc2.bias)
            h = h + (v * b.fc2.fixup_scale + b.fc2.fixup_bias_out) * 0.5
        want = F.linear(torch.tanh(h) + model.head.fixup_bias_in, model.head.weight, model.head.bias)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_fixup_refuses_a_normalised_branch():
    model = zoo.build("resnet20", width=16)
    keys = list(model.state_dict())
    with pytest.raises(InitlabError,
                       match=r"add node #\d+.*BatchNorm2d 'blocks\.0\.bn2'.*without normalization"):
        add_fixup_scalars(model, verbose=False)
    assert list(model.state_dict()) == keys and gated_modules(model) == {}


@pytest.mark.parametrize("transform", [add_skip_gates, add_fixup_scalars])
@pytest.mark.parametrize("name", ["resmlp", "resnet20_nonorm"])
def test_undo_restores_keys_and_outputs_bit_for_bit(transform, name):
    model = build(name)
    x = inputs(name)
    original = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        before = model(x)
    report = transform(model, verbose=False)
    assert report.original_keys == list(original)
    assert set(model.state_dict()) == set(original) | set(report.added)
    zero_branch_ends(model)
    report.undo()
    assert list(model.state_dict()) == list(original)
    assert gated_modules(model) == {}
    model.load_state_dict(original, strict=True)
    with torch.no_grad():
        assert torch.equal(model(x), before)
    report.undo()  # a second call does nothing


@pytest.mark.parametrize("transform", [add_skip_gates, add_fixup_scalars])
def test_copies_and_state_dicts_carry_the_scalars(transform):
    model, x = ResMLP().eval(), inputs("resmlp")
    transform(model, verbose=False)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        before = model(x)
        for p in twin.parameters():
            if p.ndim == 0:
                p.add_(0.5)
        assert torch.equal(model(x), before)  # the copy's hooks read the copy's scalars
        assert not torch.equal(twin(x), before)
    fresh = ResMLP().eval()
    transform(fresh, verbose=False)
    fresh.load_state_dict(twin.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(fresh(x), twin(x))


@pytest.mark.parametrize("transform", [add_skip_gates, add_fixup_scalars])
def test_a_transformed_model_still_traces(transform):
    model = ResMLP()
    transform(model, verbose=False)
    for method in ("fx", "recorded"):
        g = trace(model, inputs("resmlp"), method=method)
        assert len(residual_adds(g)) == 2
    end = "blocks.0.fc2" if transform is add_fixup_scalars else "blocks.0.drop"
    assert end in gated_modules(model)


@pytest.mark.parametrize("transform, what", [(add_skip_gates, "skip gates"), (add_fixup_scalars, "fixup")])
def test_a_model_without_residual_adds_is_refused(transform, what):
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(InitlabError,
                       match=rf"model Sequential has no residual add.*{what} needs? residual branches"):
        transform(mlp, verbose=False)
    assert gated_modules(mlp) == {}


@pytest.mark.parametrize("transform", [add_skip_gates, add_fixup_scalars])
def test_a_second_transform_is_refused(transform):
    model = ResMLP()
    transform(model, verbose=False)
    keys = list(model.state_dict())
    with pytest.raises(InitlabError, match=r"already transformed"):
        transform(model, verbose=False)
    assert list(model.state_dict()) == keys


def test_a_branch_ending_in_a_function_is_refused():
    model = FunctionalEnd()
    with pytest.raises(InitlabError, match=r"add node #\d+ .*fc.*ends in relu\(\).*nn\.ReLU\(\)"):
        add_skip_gates(model, verbose=False)
    assert gated_modules(model) == {}


def test_the_report_is_printed(capsys):
    report = add_skip_gates(zoo.build("resnet20", width=16))
    printed = capsys.readouterr().out
    assert printed.strip() == str(report)
    assert "add_skip_gates: 9 residual branches gated" in printed
    assert "blocks.0 (conv1 -> bn1 -> conv2 -> bn2): gate on blocks.0.bn2.skip_gate" in printed
    add_fixup_scalars(ResMLP(), verbose=False)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("name", ["resmlp", "resnet20_nonorm"])
def test_gradients_reach_the_gates_and_not_the_branches(name):
    """SkipInit's point: with the gate at 0 the branch weights get no gradient, the gate does."""
    model = build(name)
    report = add_skip_gates(model, verbose=False)
    model(inputs(name)).square().sum().backward()
    for n in report.added:
        grad = model.get_parameter(n).grad
        assert grad is not None and grad.item() != 0.0, n
    branch = {m for b in report.branches for m in b.modules}
    weights = [(n, p) for n, p in model.named_parameters() if n.rpartition(".")[0] in branch
               and not n.endswith(SKIP_GATE)]
    assert weights
    for n, p in weights:
        assert p.grad is not None and not p.grad.any(), n


@pytest.mark.parametrize("transform", [add_skip_gates, add_fixup_scalars])
def test_a_transformed_model_exports(transform):
    """torch.export captures the hooks: the exported program computes what the model does."""
    net = zoo.cifar_resnet(8, norm=False, in_channels=1)
    transform(net, verbose=False)
    with torch.no_grad():
        for name, p in net.named_parameters():  # open the gates: the branches count
            if name.endswith((SKIP_GATE, FIXUP_SCALE)):
                p.fill_(0.5)
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    program = torch.export.export(net, (x,))
    eps = torch.finfo(torch.float32).eps
    with torch.no_grad():
        want, got = net(x), program.module()(x)
    assert torch.allclose(got, want, rtol=64 * eps, atol=64 * eps * float(want.abs().max()))
