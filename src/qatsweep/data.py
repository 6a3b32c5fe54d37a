"""Two interleaved spirals embedded in many dimensions: the study's data set.

Every number is produced by a fixed procedure that does not depend on the machine:
Python's Mersenne Twister (``random.Random``) draws the points, ``math`` gives the sines
and cosines, the embedding is elementwise float64 arithmetic and sums are exactly rounded
(``math.fsum``). The same ``seed`` therefore gives the same tensors on every run and
machine, and every rounding mode of one seed trains on identical data.

Choices the study left open (also in the README):

- the arms make ``turns`` turns (1.5) with radius growing linearly from 0 to 1; class 1
  is class 0 rotated by half a turn, so the arms sit 1/3 apart radially;
- Gaussian noise of ``noise`` (0.05) is added to each 2-D coordinate;
- the 2-D points are mapped into ``dims`` dimensions by a random matrix with orthonormal
  columns (Gram-Schmidt on Gaussian vectors), which preserves their geometry;
- the split is stratified: ``test_fraction`` (20%) of each class is held out;
- every feature is standardized with the training set's mean and standard deviation, so
  the default PyTorch initialisation sees unit-scale inputs.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch

from qatsweep.errors import DataError

#: Offsets that keep the independent random streams of one seed apart.
_POINTS_STREAM = 0
_EMBEDDING_STREAM = 1
_SPLIT_STREAM = 2


@dataclass(frozen=True)
class SpiralData:
    """A train/test split of the embedded spirals, as float32 features and int64 labels."""

    x_train: torch.Tensor  # (n_train, dims)
    y_train: torch.Tensor  # (n_train,)
    x_test: torch.Tensor  # (n_test, dims)
    y_test: torch.Tensor  # (n_test,)

    def to(self, device: torch.device | str) -> SpiralData:
        """The same split on ``device``."""
        return SpiralData(*(t.to(device) for t in self.tensors()))

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x_train, y_train, x_test, y_test)``."""
        return self.x_train, self.y_train, self.x_test, self.y_test


def _rng(seed: int, stream: int) -> random.Random:
    return random.Random(f"qatsweep-spirals/{seed}/{stream}")


def spiral_points(
    n_samples: int, noise: float, turns: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n_samples`` noisy 2-D spiral points, half of each class, in class order."""
    rng = _rng(seed, _POINTS_STREAM)
    per_class = [n_samples // 2, n_samples - n_samples // 2]
    points: list[tuple[float, float]] = []
    labels: list[int] = []
    for label, count in enumerate(per_class):
        for _ in range(count):
            # sqrt spreads points evenly along the arm instead of crowding the centre.
            t = math.sqrt(rng.random())
            angle = 2.0 * math.pi * turns * t + math.pi * label
            x = t * math.cos(angle) + rng.gauss(0.0, noise)
            y = t * math.sin(angle) + rng.gauss(0.0, noise)
            points.append((x, y))
            labels.append(label)
    return np.array(points, dtype=np.float64), np.array(labels, dtype=np.int64)


def orthonormal_map(dims: int, seed: int) -> np.ndarray:
    """A ``(2, dims)`` matrix whose two rows are orthonormal, by exact-sum Gram-Schmidt."""
    rng = _rng(seed, _EMBEDDING_STREAM)
    first = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    second = [rng.gauss(0.0, 1.0) for _ in range(dims)]

    norm = math.sqrt(math.fsum(v * v for v in first))
    first = [v / norm for v in first]
    overlap = math.fsum(a * b for a, b in zip(first, second, strict=True))
    second = [b - overlap * a for a, b in zip(first, second, strict=True)]
    norm = math.sqrt(math.fsum(v * v for v in second))
    second = [v / norm for v in second]
    return np.array([first, second], dtype=np.float64)


def stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the train and test sets, holding out ``test_fraction`` of each class."""
    rng = _rng(seed, _SPLIT_STREAM)
    train: list[int] = []
    test: list[int] = []
    for label in (0, 1):
        members = [int(i) for i in np.flatnonzero(labels == label)]
        rng.shuffle(members)
        n_test = round(len(members) * test_fraction)
        test.extend(members[:n_test])
        train.extend(members[n_test:])
    # Shuffled order, so that a mini-batch never holds a single class.
    rng.shuffle(train)
    rng.shuffle(test)
    return np.array(train, dtype=np.int64), np.array(test, dtype=np.int64)


def _standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = train.shape[0]
    mean = np.array([math.fsum(col) / n for col in train.T])
    centred = train - mean
    std = np.array([math.sqrt(math.fsum(col * col) / n) for col in centred.T])
    if np.any(std == 0):
        raise DataError("a feature has zero variance on the training set; raise n_samples")
    return centred / std, (test - mean) / std


def make_spirals(
    n_samples: int = 2000,
    dims: int = 100,
    noise: float = 0.05,
    turns: float = 1.5,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> SpiralData:
    """Build the embedded, split and standardized spirals for one seed.

    Raises:
        DataError: if the settings cannot give both classes on both sides of the split.
    """
    if n_samples < 4 or dims < 2:
        raise DataError(f"need n_samples >= 4 and dims >= 2, got {n_samples} and {dims}")
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")

    points, labels = spiral_points(n_samples, noise, turns, seed)
    projection = orthonormal_map(dims, seed)
    # Elementwise products and one addition: no BLAS, so no machine-dependent summation order.
    features = points[:, 0:1] * projection[0] + points[:, 1:2] * projection[1]

    train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    if len(test_idx) == 0 or len(train_idx) == 0:
        raise DataError(
            f"test_fraction {test_fraction} of {n_samples} points leaves an empty split"
        )
    x_train, x_test = _standardize(features[train_idx], features[test_idx])

    return SpiralData(
        x_train=torch.from_numpy(x_train.astype(np.float32)),
        y_train=torch.from_numpy(labels[train_idx]),
        x_test=torch.from_numpy(x_test.astype(np.float32)),
        y_test=torch.from_numpy(labels[test_idx]),
    )
