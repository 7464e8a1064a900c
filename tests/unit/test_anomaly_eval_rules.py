"""The evaluation's matching rule (bench.anomaly_eval): causal, tolerant of a backdated onset."""

import pytest

from bench.anomaly_eval import GRACE_AFTER_MS, TOL_MS, matches, merged
from simulators.anomalies import HOUR_MS, Label

LB = Label("low_consumption", 100 * HOUR_MS, 150 * HOUR_MS)


@pytest.mark.parametrize(
    ("opened_h", "detected_h", "ok"),
    [
        (90, 110, True),  # onset backdated to the last switching event before the label
        (100, 100, True),
        (149, 162, True),  # confirmed within the grace after the end
        (149, 162.5, False),  # confirmed too late
        (151.5, 152, False),  # began after the anomaly ended
        (50, 98.5, False),  # confirmed before the anomaly began: a false alert left open
        (50, 99.5, True),  # within TOL_MS before the start
    ],
)
def test_matching_rule(opened_h: float, detected_h: float, ok: bool) -> None:
    assert matches(int(opened_h * HOUR_MS), int(detected_h * HOUR_MS), LB) is ok
    assert TOL_MS == HOUR_MS and GRACE_AFTER_MS == 12 * HOUR_MS


def test_overlapping_labels_of_one_type_are_one_anomaly() -> None:
    a, b = Label("offline", 0, 10), Label("offline", 5, 20)
    c, d = Label("offline", 30, 40), Label("spike", 0, 1)
    assert merged([c, b, d, a]) == [Label("offline", 0, 20), c, d]
