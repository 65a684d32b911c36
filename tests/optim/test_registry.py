import pytest
import torch

import optimlab.optim as oo


def test_every_name_builds_an_optimizer_that_steps():
    """A matrix parameter (Muon takes only matrices) and two steps: ADOPT's and SOAP's first
    gradient only initializes their statistics, as their reference implementations do."""
    start = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    for name in oo.names():
        p = torch.nn.Parameter(start.clone())
        opt = oo.get(name, [p])
        assert isinstance(opt, torch.optim.Optimizer)

        def closure(opt=opt, p=p):  # LBFGS needs one; the others call it once
            opt.zero_grad()
            loss = (p**2).sum()
            loss.backward()
            return loss
        for _ in range(2):
            opt.step(closure)
        assert not torch.equal(p.detach(), start), name


def test_get_passes_arguments_and_presets():
    p = torch.nn.Parameter(torch.zeros(2))
    assert isinstance(oo.get("NAdam", [p], lr=0.1), oo.NAdam)
    nesterov = oo.get("nesterov", [p], lr=0.1)
    assert nesterov.param_groups[0]["nesterov"] and nesterov.param_groups[0]["momentum"] == 0.9
    assert oo.get("momentum", [p], momentum=0.5).param_groups[0]["momentum"] == 0.5
    assert oo.Nadam is oo.NAdam


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match="unknown optimizer 'adamm': did you mean 'adam'\\? "
                                         "choose one of sgd, .*, adafactor$"):
        oo.get("adamm", [torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(ValueError, match="unknown optimizer 'kfac': choose one of sgd, "):
        oo.get("kfac", [torch.nn.Parameter(torch.zeros(1))])


def test_flavor_defaults_differ_where_the_libraries_do():
    p = [torch.nn.Parameter(torch.zeros(1))]
    assert oo.Adam(p).defaults["eps"] == 1e-8
    assert oo.Adam(p, flavor="keras").defaults["eps"] == 1e-7
    assert oo.SGD(p, flavor="keras").defaults["lr"] == 0.01
    assert oo.Adadelta(p).defaults["lr"] == 1.0
    assert oo.Adadelta(p, flavor="keras").defaults["lr"] == 1e-3
    assert oo.Adam(p, flavor="keras").defaults["decoupled_weight_decay"] is True


def test_torch_only_flags():
    p = [torch.nn.Parameter(torch.zeros(1))]
    oo.Adam(p, foreach=True, fused=False)  # accepted: the engine decides
    with pytest.raises(ValueError, match="differentiable"):
        oo.Adam(p, differentiable=True)


def test_names_without_a_closure_leave_out_lbfgs():
    """Loops that call ``step()`` alone (the lab, the Trainer) list ``names(closure=False)``."""
    assert "lbfgs" in oo.names() and "lbfgs" not in oo.names(closure=False)
    assert {"sgd", "momentum", "adam", "radam", "rprop", "asgd"} <= set(oo.names(closure=False))
    assert oo.LBFGS.needs_closure and not oo.Adam.needs_closure
