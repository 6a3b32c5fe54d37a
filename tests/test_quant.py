"""The fake quantizer against PyTorch's own op and against the rounding rules' definitions."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qatsweep.config import ROUNDING_MODES
from qatsweep.errors import ConfigError
from qatsweep.quant import (
    RoundingFakeQuantize,
    activation_range,
    fake_quantize,
    fake_quantize_per_channel,
    make_qconfig,
    weight_range,
)

DIRECTED = [m for m in ROUNDING_MODES if m != "stochastic"]

# (scale, zero_point, quant_min, quant_max): activations, weights, odd scales, low bits.
QPARAMS = [
    pytest.param(0.0173, 0, 0, 255, id="act-zp0"),
    pytest.param(0.0173, 37, 0, 255, id="act-zp37"),
    pytest.param(0.1, 128, 0, 255, id="act-zp128"),
    pytest.param(1 / 255, 0, 0, 255, id="act-1/255"),
    pytest.param(0.0421, 0, -128, 127, id="weight-8bit"),
    pytest.param(0.31, 3, 0, 15, id="act-4bit"),
    pytest.param(7.3e-5, -5, -8, 7, id="weight-4bit-tiny-scale"),
]


def _values(n: int = 200_000, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=generator) * 3


def _qparams(scale: float, zero_point: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([scale]), torch.tensor([zero_point], dtype=torch.int32)


@pytest.mark.parametrize(("scale", "zero_point", "qmin", "qmax"), QPARAMS)
def test_nearest_is_bit_exact_with_pytorch(scale, zero_point, qmin, qmax):
    s, z = _qparams(scale, zero_point)
    x = _values() * (scale * 50)  # spans the range and well beyond it
    far = torch.tensor([1e6, -1e6, 3.4e38, -3.4e38, 1e-30, 0.0, -0.0])
    x = torch.cat([x, far])

    expected = torch.fake_quantize_per_tensor_affine(x, s, z, qmin, qmax)
    actual = fake_quantize(x, s, z, qmin, qmax, "nearest")

    assert torch.equal(actual, expected)
    assert actual.view(torch.int32).equal(expected.view(torch.int32))  # signs of zero too


def test_nearest_ties_go_to_even_like_pytorch():
    # A power-of-two scale makes x * (1/scale) exact, so every value is an exact .5 tie.
    scale = 2.0**-4
    k = torch.arange(-300, 300, dtype=torch.float32)
    x = (k + 0.5) * scale
    s, z = _qparams(scale, 100)

    expected = torch.fake_quantize_per_tensor_affine(x, s, z, 0, 255)
    actual = fake_quantize(x, s, z, 0, 255, "nearest")

    assert torch.equal(actual, expected)
    inside = (k + 100 >= 0) & (k + 101 <= 255)
    assert torch.all(torch.remainder(actual[inside] / scale, 2) == 0)  # even indices


def test_nearest_ties_with_odd_scale_match_pytorch():
    scale = 0.0173
    x = (torch.arange(-200, 200, dtype=torch.float32) + 0.5) * scale
    ties = x[(x * (1.0 / torch.tensor(scale))).frac().abs() == 0.5]
    assert ties.numel() > 100
    s, z = _qparams(scale, 7)
    assert torch.equal(
        fake_quantize(ties, s, z, 0, 255),
        torch.fake_quantize_per_tensor_affine(ties, s, z, 0, 255),
    )


def test_per_channel_module_matches_pytorch():
    torch.manual_seed(0)
    weight = torch.randn(64, 100) * torch.linspace(0.01, 3, 64).unsqueeze(1)
    qconfig = make_qconfig("nearest", bits=8, per_channel=True)
    quantizer = qconfig.weight()

    actual = quantizer(weight)
    expected = torch.fake_quantize_per_channel_affine(
        weight, quantizer.scale, quantizer.zero_point, 0, -128, 127
    )

    assert quantizer.scale.shape == (64,)
    assert torch.equal(actual, expected)
    functional = fake_quantize_per_channel(
        weight, quantizer.scale, quantizer.zero_point, 0, -128, 127, "nearest"
    )
    assert torch.equal(functional, expected)


@pytest.mark.parametrize("rounding", ROUNDING_MODES)
@pytest.mark.parametrize(("scale", "zero_point", "qmin", "qmax"), QPARAMS)
def test_grid_values_map_to_themselves(rounding, scale, zero_point, qmin, qmax):
    s, z = _qparams(scale, zero_point)
    once = fake_quantize(_values(), s, z, qmin, qmax, rounding, torch.Generator().manual_seed(1))
    twice = fake_quantize(once, s, z, qmin, qmax, rounding, torch.Generator().manual_seed(2))
    assert torch.equal(once, twice)


def test_naive_floor_would_move_grid_values():
    """Why the directed rules need their correction: the problem is real at this scale."""
    scales = torch.rand(200, 1, generator=torch.Generator().manual_seed(0)) * 0.1 + 1e-3
    grid = torch.arange(-128, 128, dtype=torch.float32) * scales
    naive = torch.floor(grid * (1.0 / scales)) * scales
    assert (naive != grid).float().mean().item() > 0.1  # about one grid point in seven


@settings(max_examples=60, deadline=None)
@given(
    scale=st.floats(1e-4, 10.0, allow_nan=False, allow_infinity=False),
    zero_point=st.integers(-20, 20),
    rounding=st.sampled_from(ROUNDING_MODES),
    seed=st.integers(0, 2**16),
)
def test_idempotent_for_any_scale(scale, zero_point, rounding, seed):
    s, z = _qparams(scale, zero_point)
    x = _values(2000, seed) * scale * 60
    once = fake_quantize(x, s, z, -128, 127, rounding, torch.Generator().manual_seed(seed))
    twice = fake_quantize(once, s, z, -128, 127, rounding, torch.Generator().manual_seed(seed))
    assert torch.equal(once, twice)


def _inside(x: torch.Tensor, scale: float, zero_point: int, qmin: int, qmax: int):
    """Values at least one step away from either end of the range."""
    index = x / scale + zero_point
    return (index > qmin + 1) & (index < qmax - 1)


@pytest.mark.parametrize(("scale", "zero_point", "qmin", "qmax"), QPARAMS)
def test_floor_and_ceil_bounds_and_bias(scale, zero_point, qmin, qmax):
    s, z = _qparams(scale, zero_point)
    x = _values() * scale * (qmax - qmin) / 6
    x = x[_inside(x, scale, zero_point, qmin, qmax)]
    step = s.item()

    floor = fake_quantize(x, s, z, qmin, qmax, "floor")
    ceil = fake_quantize(x, s, z, qmin, qmax, "ceil")
    nearest = fake_quantize(x, s, z, qmin, qmax, "nearest")

    # "Within one step" holds exactly; x - step itself rounds, hence the ulp-sized slack.
    slack = 4 * torch.finfo(torch.float32).eps * x.abs()
    assert torch.all(floor <= x) and torch.all(floor > x - step - slack)
    assert torch.all(ceil >= x) and torch.all(ceil < x + step + slack)
    steps_apart = (ceil - floor) / step
    assert torch.all(((steps_apart - 1).abs() < 1e-3) | (steps_apart == 0))
    assert ((floor - x) / step).mean().item() == pytest.approx(-0.5, abs=0.02)
    assert ((ceil - x) / step).mean().item() == pytest.approx(0.5, abs=0.02)
    assert abs(((nearest - x) / step).mean().item()) < 0.02


def test_half_away_and_toward_zero_on_ties_and_signs():
    scale = 2.0**-3
    k = torch.arange(-20, 20, dtype=torch.float32)
    ties = (k + 0.5) * scale
    s, z = _qparams(scale, 0)

    away = fake_quantize(ties, s, z, -128, 127, "half_away")
    assert torch.equal(away, torch.where(ties > 0, (k + 1) * scale, k * scale))

    x = _values(50_000) * 0.5
    toward = fake_quantize(x, s, z, -128, 127, "toward_zero")
    assert torch.all(toward.abs() <= x.abs())
    assert torch.all((x - toward).abs() < scale)
    assert torch.all(torch.sign(toward) * torch.sign(x) >= 0)


def test_stochastic_is_reproducible_and_unbiased():
    s, z = _qparams(0.0173, 20)
    x = _values(1_000_000) * 0.5
    x = x[_inside(x, 0.0173, 20, 0, 255)]

    first = fake_quantize(x, s, z, 0, 255, "stochastic", torch.Generator().manual_seed(5))
    again = fake_quantize(x, s, z, 0, 255, "stochastic", torch.Generator().manual_seed(5))
    other = fake_quantize(x, s, z, 0, 255, "stochastic", torch.Generator().manual_seed(6))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)

    # Each error lies in (-1, 1) steps with standard deviation at most 1/2, so the mean of n
    # of them strays from 0 by more than 5 / (2 sqrt(n)) with negligible probability.
    errors = (first - x) / s
    bound = 5 * 0.5 / math.sqrt(errors.numel())
    assert abs(errors.mean().item()) < bound
    assert torch.all(errors.abs() < 1 + 1e-4)


@pytest.mark.parametrize("rounding", DIRECTED)
def test_gradient_is_pytorch_straight_through_estimator(rounding):
    s, z = _qparams(0.05, 10)
    x = (_values(20_000) * 5).requires_grad_()
    reference = x.detach().clone().requires_grad_()
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))

    fake_quantize(x, s, z, 0, 255, rounding).backward(upstream)
    torch.fake_quantize_per_tensor_affine(reference, s, z, 0, 255).backward(upstream)

    # The masks can differ only where the rules round a value to different sides of an end
    # of the range; everywhere else the gradients are identical.
    index = x.detach() / 0.05 + 10
    away_from_ends = ((index - (-0.5)).abs() > 1.5) & ((index - 255.5).abs() > 1.5)
    assert torch.equal(x.grad[away_from_ends], reference.grad[away_from_ends])
    assert torch.all(x.grad[index > 257] == 0) and torch.all(x.grad[index < -2] == 0)
    assert torch.equal(x.grad[(index > 2) & (index < 253)], upstream[(index > 2) & (index < 253)])


def test_stochastic_gradient_uses_mask():
    s, z = _qparams(0.05, 0)
    x = torch.tensor([-1.0, 0.3, 5.0, 20.0], requires_grad=True)
    fake_quantize(x, s, z, 0, 255, "stochastic", torch.Generator().manual_seed(0)).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize("rounding", ROUNDING_MODES)
def test_non_finite_values_are_never_quantized(rounding):
    s, z = _qparams(0.1, 0)
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 1.0])
    out = fake_quantize(x, s, z, 0, 255, rounding, torch.Generator().manual_seed(0))
    assert math.isnan(out[0].item())
    assert out[1].item() == math.inf and out[2].item() == -math.inf
    assert out[3].item() == pytest.approx(1.0)


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_a_bad_batch_leaves_the_observer_scale_intact(bad):
    quantizer = make_qconfig("floor").activation()
    quantizer(torch.linspace(-1, 3, 100))
    scale, zero_point = quantizer.scale.clone(), quantizer.zero_point.clone()

    poisoned = torch.linspace(-1, 3, 100)
    poisoned[7] = float(bad)
    out = quantizer(poisoned)

    assert not torch.isfinite(out[7])
    assert torch.equal(quantizer.scale, scale) and torch.equal(quantizer.zero_point, zero_point)
    assert torch.isfinite(quantizer.activation_post_process.min_val)
    quantizer(torch.linspace(-1, 3, 100))
    assert torch.isfinite(quantizer.scale).all()


def test_a_bad_first_batch_keeps_default_qparams():
    quantizer = make_qconfig("nearest").activation()
    quantizer(torch.tensor([float("nan"), 1.0]))
    assert quantizer.scale.item() == 1.0 and quantizer.zero_point.item() == 0
    quantizer(torch.tensor([0.0, 2.55]))
    assert quantizer.scale.item() == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("bits", "reduce_range", "act", "weight"),
    [
        (8, False, (0, 255), (-128, 127)),
        (8, True, (0, 127), (-128, 127)),
        (4, False, (0, 15), (-8, 7)),
        (2, False, (0, 3), (-2, 1)),
    ],
)
def test_qconfig_ranges(bits, reduce_range, act, weight):
    assert activation_range(bits, reduce_range) == act
    assert weight_range(bits) == weight
    qconfig = make_qconfig("ceil", bits=bits, reduce_range=reduce_range)
    activation, weight_fq = qconfig.activation(), qconfig.weight()
    assert isinstance(activation, RoundingFakeQuantize)
    assert (activation.quant_min, activation.quant_max) == act
    assert (weight_fq.quant_min, weight_fq.quant_max) == weight
    assert activation.rounding == weight_fq.rounding == "ceil"
    assert weight_fq.qscheme == torch.per_tensor_symmetric


def test_the_module_uses_its_rounding():
    qconfig_floor, qconfig_ceil = make_qconfig("floor"), make_qconfig("ceil")
    x = torch.linspace(0, 1, 1001)
    floor, ceil = qconfig_floor.activation()(x), qconfig_ceil.activation()(x)
    assert torch.all(floor <= x) and torch.all(ceil >= x) and not torch.equal(floor, ceil)


@pytest.mark.parametrize("call", ["fake_quantize", "make_qconfig", "module"])
def test_unknown_rounding_is_a_config_error(call):
    with pytest.raises(ConfigError, match="unknown rounding 'banker'"):
        if call == "fake_quantize":
            fake_quantize(torch.zeros(3), 0.1, 0, 0, 255, "banker")
        elif call == "make_qconfig":
            make_qconfig("banker")
        else:
            RoundingFakeQuantize(rounding="banker")


def test_bits_out_of_range_is_a_config_error():
    with pytest.raises(ConfigError, match="bits must be between 2 and 8"):
        make_qconfig("nearest", bits=9)


QPARAM_CONFIGS = [
    pytest.param(0, 255, torch.quint8, torch.per_tensor_affine, id="act-8bit"),
    pytest.param(0, 127, torch.quint8, torch.per_tensor_affine, id="act-reduced"),
    pytest.param(0, 3, torch.quint8, torch.per_tensor_affine, id="act-2bit"),
    pytest.param(-128, 127, torch.qint8, torch.per_tensor_symmetric, id="weight-8bit"),
    pytest.param(-8, 7, torch.qint8, torch.per_tensor_symmetric, id="weight-4bit"),
    pytest.param(-128, 127, torch.qint8, torch.per_tensor_affine, id="affine-qint8"),
]


@pytest.mark.parametrize(("qmin", "qmax", "dtype", "qscheme"), QPARAM_CONFIGS)
@settings(max_examples=300, deadline=None)
@given(
    low=st.floats(-1e4, 1e4, allow_nan=False, width=32),
    span=st.floats(0, 2e4, allow_nan=False, width=32),
)
def test_scalar_qparams_equal_pytorchs_calculate_qparams(qmin, qmax, dtype, qscheme, low, span):
    """The fast path re-derives PyTorch's formulas; a torch upgrade that changes them fails."""
    from torch.ao.quantization import MovingAverageMinMaxObserver

    from qatsweep.quant.qparams import FAST_QPARAMS, per_tensor_qparams

    assert (qscheme, dtype) in FAST_QPARAMS
    observer = MovingAverageMinMaxObserver(
        quant_min=qmin, quant_max=qmax, dtype=dtype, qscheme=qscheme
    )
    high = float(torch.tensor(low + span, dtype=torch.float32))
    observer.min_val.fill_(low)
    observer.max_val.fill_(high)

    scale, zero_point = observer.calculate_qparams()
    fast_scale, fast_zero_point = per_tensor_qparams(observer, low, high)

    assert fast_scale == scale.item() and fast_zero_point == zero_point.item()
