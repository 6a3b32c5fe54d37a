"""The MLP: shapes, QAT preparation, and the pairing of modes within a seed."""

from __future__ import annotations

import pytest
import torch

from qatsweep.config import MODES, TrialConfig
from qatsweep.model import MLP, build_model, fake_quantizers


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach() for name, p in model.named_parameters()]


@pytest.mark.parametrize("seed", [0, 7])
def test_every_mode_of_a_seed_starts_from_the_same_weights(seed):
    models = [build_model(TrialConfig(mode=m, width=8, depth=3, seed=seed)) for m in MODES]
    reference = _weights(models[0])
    for model in models[1:]:
        weights = _weights(model)
        assert len(weights) == len(reference)
        assert all(torch.equal(a, b) for a, b in zip(weights, reference, strict=True))


def test_other_seed_other_weights():
    a = build_model(TrialConfig(mode="floor", seed=0))
    b = build_model(TrialConfig(mode="floor", seed=1))
    assert not torch.equal(_weights(a)[0], _weights(b)[0])


def test_building_a_model_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model(TrialConfig(mode="nearest"))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(("width", "depth"), [(4, 2), (16, 6), (3, 1)])
def test_shapes(width, depth):
    model = MLP(width, depth, in_features=100)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == depth + 1
    assert model(torch.zeros(5, 100)).shape == (5, 2)


def test_baseline_has_no_quantizers_and_modes_have_their_own():
    assert fake_quantizers(build_model(TrialConfig(mode="baseline"))) == []
    quantizers = fake_quantizers(build_model(TrialConfig(mode="ceil", depth=3)))
    # input + (weight, activation) per hidden layer + (weight, activation) of the head
    assert len(quantizers) == 1 + 2 * 3 + 2
    assert {q.rounding for q in quantizers} == {"ceil"}
    activations = [q for q in quantizers if q.dtype == torch.quint8]
    assert {(q.quant_min, q.quant_max) for q in activations} == {(0, 255)}


def test_per_channel_weights():
    model = build_model(TrialConfig(mode="nearest", per_channel=True, width=8))
    model(torch.randn(4, 100))
    weight_quantizers = [q for q in fake_quantizers(model) if q.dtype == torch.qint8]
    assert weight_quantizers and all(q.is_per_channel for q in weight_quantizers)
    assert weight_quantizers[0].scale.shape == (8,)


def test_stochastic_streams_are_distinct_and_seeded():
    a = fake_quantizers(build_model(TrialConfig(mode="stochastic", seed=3)))
    b = fake_quantizers(build_model(TrialConfig(mode="stochastic", seed=3)))
    draws_a = [torch.rand(4, generator=q.generator) for q in a]
    draws_b = [torch.rand(4, generator=q.generator) for q in b]
    assert all(torch.equal(x, y) for x, y in zip(draws_a, draws_b, strict=True))
    assert not torch.equal(draws_a[0], draws_a[1])


def test_invalid_shape_is_rejected():
    with pytest.raises(ValueError, match="at least 1"):
        MLP(0, 2)


def test_torch_ao_deprecation_notice_is_kept_from_the_user():
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_model(TrialConfig(mode="floor", depth=2, per_channel=True))
    assert not [w for w in caught if "deprecated" in str(w.message)], caught


def test_other_warnings_still_reach_the_user():
    import warnings

    from qatsweep.quant import quiet_deprecation

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_deprecation():
            warnings.warn("torch.ao.quantization is deprecated", DeprecationWarning, stacklevel=1)
            warnings.warn("something real", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something real"]
