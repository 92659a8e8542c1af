"""A measurement defined outside cgjax/, as a user would add one.

Used by tests/test_measurements.py: `type='tests.toy_measurement'`.
"""
import jax
import numpy as np

FIELDS = {'scale': 1.0}


class Measurement:

  def __init__(self, name, cfg, ctx):
    self._name, self._scale = name, cfg.scale
    self._calls = np.zeros(0, np.int32)
    del ctx

  def run(self, state, step):
    self._calls = np.append(self._calls, np.int32(step))
    sq = sum(float(np.sum(np.square(np.asarray(x, np.float64))))
             for x in jax.tree.leaves(state.params))
    return {f'{self._name}/param_sq_norm': self._scale * sq}

  def state_dict(self):
    return {'calls': self._calls}

  def load_state_dict(self, arrays):
    self._calls = np.asarray(arrays['calls'], np.int32)

  def finalize(self, workdir):
    np.save(f'{workdir}/{self._name}_calls.npy', self._calls)
