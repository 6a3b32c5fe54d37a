"""The spirals: reproducible to the bit, balanced, stratified, orthonormally embedded."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from qatsweep.data import make_spirals, orthonormal_map, spiral_points, stratified_split
from qatsweep.errors import DataError


def _digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.numpy().tobytes()).hexdigest()[:16]


def test_default_data_is_the_same_on_every_machine():
    """Golden digests: a different machine, BLAS or libm that changed a bit would fail here."""
    data = make_spirals()
    assert [_digest(t) for t in data.tensors()] == [
        "117ef232daf9fade",
        "ca247fcb46ef7706",
        "28a958affde3f29b",
        "3933c08c059986cf",
    ]


def test_same_seed_same_tensors_other_seed_other_tensors():
    first, again, other = make_spirals(seed=4), make_spirals(seed=4), make_spirals(seed=5)
    for a, b in zip(first.tensors(), again.tensors(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first.x_train, other.x_train)


def test_shapes_dtypes_and_balance():
    data = make_spirals(n_samples=2000, dims=100, test_fraction=0.2)
    assert data.x_train.shape == (1600, 100) and data.x_test.shape == (400, 100)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert int(data.y_train.sum()) == 800 and int(data.y_test.sum()) == 200  # stratified


def test_features_are_standardized_on_the_training_set():
    data = make_spirals()
    assert data.x_train.double().mean(0).abs().max() < 1e-6
    assert (data.x_train.double().std(0, unbiased=False) - 1).abs().max() < 1e-5


def test_embedding_has_orthonormal_rows():
    projection = orthonormal_map(100, seed=0)
    assert projection.shape == (2, 100)
    np.testing.assert_allclose(projection @ projection.T, np.eye(2), atol=1e-12)


def test_points_are_two_interleaved_spirals():
    points, labels = spiral_points(1000, noise=0.0, turns=1.5, seed=0)
    radius = np.hypot(points[:, 0], points[:, 1])
    assert radius.max() <= 1.0 + 1e-12
    # Without noise, class 1 is class 0 turned by half a turn: same radii, opposite sides.
    assert np.allclose(np.sort(radius[labels == 0]), np.sort(radius[labels == 0]))
    assert set(labels.tolist()) == {0, 1} and labels.sum() == 500


def test_split_is_disjoint_and_complete():
    labels = np.array([0, 1] * 50)
    train, test = stratified_split(labels, 0.2, seed=1)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(100))
    assert len(test) == 20 and labels[test].sum() == 10


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_samples": 2}, "n_samples >= 4"),
        ({"test_fraction": 1.0}, "strictly between 0 and 1"),
        ({"n_samples": 4, "test_fraction": 0.01}, "empty split"),
    ],
    ids=["too-few-points", "all-test", "empty-test"],
)
def test_impossible_settings_raise_data_error(kwargs, message):
    with pytest.raises(DataError, match=message):
        make_spirals(**kwargs)
