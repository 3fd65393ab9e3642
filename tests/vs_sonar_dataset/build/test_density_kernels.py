"""The bfloat16 keys of density_kernels: ordered like the floats, and read back exactly."""

import numpy as np
import torch

from vs_sonar_dataset.build.density_kernels import EMPTY, _key, float_of_keys


def test_keys_order_every_bfloat16_pattern_like_its_value_and_read_back_exactly():
    bits = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
    values = torch.from_numpy(bits.copy()).view(torch.bfloat16).float().numpy()
    finite = np.isfinite(values) | np.isinf(values)
    finite &= ~np.isnan(values)
    keys = np.array([_key(b) for b in bits[finite]], np.int16)
    order = np.argsort(keys, kind="stable")
    assert np.all(np.diff(values[finite][order]) >= 0)  # -0.0 and +0.0 are the only equal neighbours
    assert np.array_equal(float_of_keys(keys), values[finite])
    assert (keys > EMPTY).all()
