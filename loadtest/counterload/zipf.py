"""A Zipf sampler over ranks ``0..n-1``: rank k is drawn with weight ``1 / (k+1)**s``."""

from __future__ import annotations

import bisect
import itertools
import random


class Zipf:
    def __init__(self, n: int, s: float = 1.1, rng: random.Random | None = None) -> None:
        if n < 1:
            raise ValueError("n must be >= 1")
        self.n = n
        self._cumulative = list(itertools.accumulate(1.0 / (k + 1) ** s for k in range(n)))
        self._rng = rng or random.Random()

    def __call__(self) -> int:
        x = self._rng.random() * self._cumulative[-1]
        return min(bisect.bisect_right(self._cumulative, x), self.n - 1)
