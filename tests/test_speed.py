"""benchmarks/speed.py: how the interleaved rounds of a comparison are summarised (the timings themselves are
benchmarks, not tests)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import speed  # noqa: E402


def test_median_ratio_of_interleaved_rounds():
    # (slow, fast) seconds per round, measured back to back: speed-ups 5, 3 and 6.
    slow, fast, ratio, low, high = speed._median_ratio([(10.0, 2.0), (9.0, 3.0), (12.0, 2.0)])
    assert (slow, fast) == (10.0, 2.0)
    assert (ratio, low, high) == (5.0, 3.0, 6.0)
    # One noisy round (the machine busy during the fast side) moves the range, not the median.
    _, _, ratio, low, high = speed._median_ratio([(10.0, 2.0), (10.0, 2.0), (10.0, 8.0)])
    assert (ratio, low, high) == (5.0, 1.25, 5.0)
