import numpy as np

from vs_sonar_dataset.embed.vectors import invalid_reasons


def test_reasons():
    v = np.ones((5, 4), dtype=np.float32)
    v[1, 2] = np.nan
    v[2, 0] = np.inf
    v[3] = 0.0
    v[4, 1] = -np.inf
    assert invalid_reasons(v) == [None, "nan", "inf", "zero_norm", "inf"]
    both = np.array([[np.nan, np.inf]], dtype=np.float32)
    assert invalid_reasons(both) == ["nan"]
