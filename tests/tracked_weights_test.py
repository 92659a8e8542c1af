"""The tracked_weights measurement against per-example gradients taken one
example at a time."""
import os

import jax
import numpy as np

from cgjax import data as data_lib
from cgjax import losses
from cgjax import measurements
from cgjax import models
from cgjax import runs
from tests.conftest import run_python


def test_tracked_values_match_one_example_at_a_time(tmp_path):
  workdir = str(tmp_path / 'run')
  run_python(['launch.py', '--config', 'configs/mnist_mlp.py:runlocal,'
              'depth=2,width=16', '--workdir', workdir])
  run = runs.load(workdir)
  out = str(tmp_path / 'out')
  spec = {'tracked': measurements.spec('tracked_weights', examples=7,
                                       weights=5, microbatch_size=3)}
  scalars = run.evaluate(20, spec, out)
  saved = np.load(os.path.join(out, 'tracked.npz'))
  values = saved['values']
  assert values.shape == (1, 7, 5 * 3)  # 3 kernels (2 hidden, head) x 5
  assert saved['steps'].tolist() == [20]
  assert sorted(set(saved['leaf'].tolist())) == [
      'dense0/kernel', 'dense1/kernel', 'head/kernel']
  config = run.config
  dataset = data_lib.load(config.data, config.noise)
  model = models.get_model(config.model.name, dataset.num_classes,
                           **config.model.kwargs)
  state = run.restore(20)
  grad = jax.jit(jax.grad(losses.make_per_example_loss(model)))
  train = dataset.train
  position = {k: i for i, k in enumerate(train.keys.tolist())}
  for row, key in enumerate(saved['keys'].tolist()):
    i = position[key]
    g = grad(state['params'], {'image': train.images[i],
                               'label': train.labels[i]},
             state['batch_stats'])
    leaves = dict(zip([
        '/'.join(str(getattr(k, 'key', k)) for k in p)
        for p, _ in jax.tree_util.tree_flatten_with_path(g)[0]],
        jax.tree.leaves(g)))
    expect = [np.ravel(leaves[leaf])[index]
              for leaf, index in zip(saved['leaf'], saved['index'])]
    np.testing.assert_allclose(values[0, row], expect, rtol=1e-5, atol=1e-8)
    assert saved['is_noisy'][row] == train.is_noisy[i]
  agreement = np.abs(np.sign(values[0]).sum(0)).mean() / 7
  np.testing.assert_allclose(scalars['tracked/sign_agreement'], agreement,
                             rtol=1e-6)
  bad = {'tracked': measurements.spec('tracked_weights', layers=('nope',))}
  try:
    run.evaluate(20, bad, str(tmp_path / 'bad'))
  except ValueError as err:
    assert str(err).startswith("measurements.tracked.layers: no parameter "
                               "['nope'] in model 'mlp'"), err
  else:
    raise AssertionError('an unknown layer was accepted')
