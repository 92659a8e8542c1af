"""experiments/fig_m_dependence on a real checkpoint, against per-example
gradients taken one example at a time and summed in float64."""
import json
import os

import jax
import numpy as np
import scipy.stats

from cgjax import data as data_lib
from cgjax import losses
from cgjax import models
from cgjax import runs
from experiments import fig_m_dependence
from tests.conftest import run_python


def test_m_coherence_of_nested_samples_against_a_naive_loop(tmp_path):
  workdir = str(tmp_path / 'run')
  run_python(['launch.py', '--config', 'configs/mnist_mlp.py:runlocal,depth=1,'
              'width=16', '--workdir', workdir,
              '--config.measurements.probe.statistics=norms'])
  run = runs.load(workdir)
  out = str(tmp_path / 'out')
  values = fig_m_dependence.measure(run, None, out)
  sizes = fig_m_dependence.sizes(run)
  # Every power of two up to each set's size, and no larger.
  assert sorted(values['test']) == [2 ** k for k in range(
      1, int(np.log2(sizes['test'])) + 1)]
  config = run.config
  dataset = data_lib.load(config.data, config.noise)
  model = models.get_model(config.model.name, dataset.num_classes,
                           **config.model.kwargs)
  restored = run.restore()
  loss = losses.make_per_example_loss(model)
  grad = jax.jit(jax.grad(loss))
  test = dataset.test
  position = {k: i for i, k in enumerate(test.keys.tolist())}
  previous = []
  for m in (2, 4, 8, 16, 32):
    ids = json.load(open(os.path.join(out, 'evaluations', f'm{m}_ids.json')))
    keys = ids['test']
    assert keys[:len(previous)] == previous  # nested samples
    previous = keys
    index = np.array([position[k] for k in keys])
    images = test.read_images(index)
    g = np.stack([np.concatenate([
        np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(grad(
            restored['params'], {'image': images[i],
                                 'label': test.labels[index[i]]},
            restored['batch_stats']))]) for i in range(m)])
    expect = (g.sum(0) ** 2).sum() / (g ** 2).sum()
    np.testing.assert_allclose(values['test'][m]['m_coherence'], expect,
                               rtol=1e-4)
    np.testing.assert_allclose(values['test'][m]['alpha'], expect / m,
                               rtol=1e-4)
    rho = lambda a: (np.sum(a.sum(0) ** 2) / np.sum(a ** 2) - 1) / (len(a) - 1)
    np.testing.assert_allclose(values['test'][m]['rho'], rho(g), rtol=1e-4,
                               atol=1e-7)
    if m >= 16:  # 8 chunks (the default subsamples) of m / 8 examples
      parts = [rho(g[i:i + m // 8]) for i in range(0, m, m // 8)]
      low, high = scipy.stats.t.interval(0.95, 7, loc=rho(g),
                                         scale=scipy.stats.sem(parts))
      np.testing.assert_allclose(
          [values['test'][m]['rho_low'], values['test'][m]['rho_high']],
          [low, high], rtol=1e-3, atol=1e-6)
  # A missing checkpoint or a dir of several runs: one line each.
  bad = run_python(['-m', 'experiments.fig_m_dependence', workdir, '--step',
                    '7'], check=False)
  assert bad.returncode and bad.stderr.strip().splitlines()[-1] == (
      f'error: {workdir}/checkpoints has no checkpoint at step 7; saved '
      f'steps: {run.checkpoint_steps()}'), bad.stderr
  bad = run_python(['-m', 'experiments.fig_m_dependence', str(tmp_path)],
                   check=False)
  assert 'holds several runs (a sweep dir); give one workdir' in bad.stderr
  fig_m_dependence.plot(values, 'test', out)
  assert os.path.getsize(os.path.join(out, 'm_dependence.png')) > 0
  assert '| 2 |' in fig_m_dependence.table(values)
