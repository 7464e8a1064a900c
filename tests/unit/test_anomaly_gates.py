import numpy as np
import pytest

from app.domain.anomaly.gates import NONE, OPEN, RESOLVE, gate_point, gate_runs
from app.domain.anomaly.state import NO_TIME

N = NO_TIME


@pytest.mark.parametrize(
    ("on", "off", "is_open", "t", "trig", "hold", "expected"),
    [
        (N, N, False, 100, True, True, (100, N, NONE, 0)),  # starts pending
        (100, N, False, 150, True, True, (100, N, NONE, 0)),  # 50 < min_on 60
        (100, N, False, 160, True, True, (100, N, OPEN, 100)),  # opens at the onset
        (100, N, False, 170, False, False, (100, 170, NONE, 0)),  # dip, still pending
        (130, 170, False, 180, True, True, (130, N, NONE, 0)),  # dip shorter than clear
        (100, 170, False, 180, True, True, (100, N, OPEN, 100)),  # the dip counts as on
        (100, 170, False, 200, False, False, (N, N, NONE, 0)),  # pending forgotten
        (100, N, True, 300, False, True, (100, N, NONE, 0)),  # hold keeps it open
        (100, N, True, 300, False, False, (100, 300, NONE, 0)),
        (100, 300, True, 330, False, False, (N, N, RESOLVE, 300)),  # resolved at off time
    ],
)
def test_gate_point(on, off, is_open, t, trig, hold, expected):
    assert gate_point(on, off, is_open, t, trig, hold, 60, 30) == expected


def test_gate_runs_open_then_resolve():
    t = np.arange(0, 200, 10, dtype=np.int64)  # 0..190
    mask = (t >= 30) & (t < 100)
    on, off, events = gate_runs(N, N, False, t, mask, 40, 50)
    # true from 30, open at first reading >= 70; false from 100, resolved at first >= 150
    assert events == [(OPEN, 30, 70, 7), (RESOLVE, 100, 150, 15)]
    assert (on, off) == (N, N)


def test_gate_runs_pending_reset_immediately():
    t = np.array([0, 10, 20, 30, 40], dtype=np.int64)
    mask = np.array([True, False, True, True, True])
    # with reset=0 the dip at 10 forgets the onset at 0: 40 - 20 < 30, nothing opens
    assert gate_runs(N, N, False, t, mask, 30, 50, reset=0) == (20, N, [])
    # default reset = clear: the dip is tolerated and the onset stays 0
    assert gate_runs(N, N, False, t, mask, 30, 50)[2] == [(OPEN, 0, 30, 3)]
