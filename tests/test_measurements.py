"""The measurement seam and the Coherent Gradients measurements, checked
against independent derivations (explicit per-example gradients, naive
loops, closed forms)."""
import os
import shutil
import threading
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cgjax import data as data_lib
from cgjax import losses
from cgjax import measurements
from cgjax import models
from cgjax import parallel
from cgjax import train
from cgjax import workdir as workdir_lib
from cgjax.measurements import learning_times
from cgjax.data import pipeline
from cgjax.measurements import loss_shares
from cgjax.models import mlp
from configs import mnist_mlp
from tests.conftest import load_params


def test_schedule_steps():
  cfg = measurements.spec('loss_shares', every=30, steps=(0, 7), at_end=True,
                          num_log_spaced=3)
  # log-spaced in [1, 100] with 3 points: 1, 10, 100
  assert measurements.schedule_steps(cfg, 100) == {0, 7, 1, 10, 100, 30, 60,
                                                   90}
  cfg.update(every=0, num_log_spaced=0, at_end=False, steps=(5, 500))
  assert measurements.schedule_steps(cfg, 100) == {5}


def test_spec_names_unknown_fields_and_types():
  with pytest.raises(ValueError, match=r"'loss_shares' has no field\(s\) "
                     r"\['m'\]"):
    measurements.spec('loss_shares', m=3)
  with pytest.raises(ValueError, match="unknown measurement type 'probes'"):
    measurements.spec('probes')


def _naive_times(correct_history, steps):
  """first / stays-correct step of each example by a plain loop."""
  n = correct_history.shape[1]
  first, stays = np.full(n, -1), np.full(n, -1)
  for i in range(n):
    for t, ok in zip(steps, correct_history[:, i]):
      if ok and first[i] < 0:
        first[i] = t
    for j, t in enumerate(steps):
      if correct_history[j:, i].all():
        stays[i] = t
        break
  return first, stays


def test_learning_time_updates_match_a_naive_loop():
  rng = np.random.default_rng(0)
  steps = [0, 3, 5, 9, 20, 40, 41]
  history = rng.random((len(steps), 200)) < np.linspace(0.2, 0.9, 7)[:, None]
  times = np.full((200, 2), -1, np.int32)
  for j, t in enumerate(steps):
    times = learning_times.update(times, history[j], t)
    first, stays = _naive_times(history[:j + 1], steps[:j + 1])
    np.testing.assert_array_equal(times[:, 0], first)
    np.testing.assert_array_equal(times[:, 1], stays)


def _mlp_batch(n=24, noisy=9, seed=0):
  rng = np.random.default_rng(seed)
  model = mlp.Model(num_classes=4, widths=(16,))
  images = rng.integers(0, 256, (n, 5, 5, 1)).astype(np.uint8)
  labels = rng.integers(0, 4, n).astype(np.int32)
  params = model.init(jax.random.key(seed), images[:1], train=False)['params']
  is_noisy = np.zeros(n, bool)
  is_noisy[rng.choice(n, noisy, replace=False)] = True
  batch = {'image': images, 'label': labels}
  return model, params, batch, is_noisy


def test_loss_shares_against_explicit_per_example_gradients():
  model, params, batch, is_noisy = _mlp_batch()
  fn = jax.jit(loss_shares.make_inner_products(model))
  rows = loss_shares.designations(is_noisy, 2, seed=0)
  dots = np.asarray(fn(params, {}, batch, jnp.asarray(rows)), np.float64)
  f = dots / dots[0]
  np.testing.assert_allclose(f[1] + f[2], 1.0, atol=1e-5)  # f_p + f_c
  np.testing.assert_allclose(f[3] + f[4], 1.0, atol=1e-5)  # null pair

  def one(p, i):
    logits = model.apply({'params': p}, batch['image'][i:i + 1])
    return losses.cross_entropy(logits, batch['label'][i:i + 1])[0]

  flat = lambda g: np.concatenate([np.asarray(x, np.float64).ravel()
                                   for x in jax.tree.leaves(g)])
  grads = np.stack([flat(jax.grad(one)(params, i))
                    for i in range(len(is_noisy))])
  g = grads.sum(0)
  g_p = grads[~is_noisy].sum(0)
  g_c = grads[is_noisy].sum(0)
  np.testing.assert_allclose(f[1], g @ g_p / (g @ g), rtol=1e-4)
  np.testing.assert_allclose(f[2], g @ g_c / (g @ g), rtol=1e-4)
  assert abs(f[1] - (~is_noisy).mean()) > 1e-3  # not trivially the fraction


def test_null_model_share_is_the_pristine_fraction_on_average():
  """E[g_p] over random designations of n_p examples is (n_p / n) g, so the
  null f_p averages to n_p / n."""
  model, params, batch, is_noisy = _mlp_batch(n=30, noisy=12, seed=1)
  fn = jax.jit(loss_shares.make_inner_products(model))
  rows = loss_shares.designations(is_noisy, 300, seed=3)
  dots = np.asarray(fn(params, {}, batch, jnp.asarray(rows)), np.float64)
  null = dots[3::2] / dots[0]
  # Standard error of the mean of 300 draws; 4 of them as the tolerance.
  tolerance = 4 * null.std() / np.sqrt(len(null))
  assert abs(null.mean() - 18 / 30) < tolerance, (null.mean(), tolerance)
  assert null.std() > 0.01  # the permutations really differ


def test_a_measurement_from_outside_cgjax_is_run_checkpointed_and_resumed(
    tmp_path):
  config = mnist_mlp.get_config('runlocal')
  config.measurements = ml_collections.ConfigDict({
      'toy': measurements.spec('tests.toy_measurement', every=10, steps=(0, 3),
                               scale=2.0)})
  workdir = str(tmp_path)
  train.train_and_evaluate(config, workdir)
  # As a crash before the last checkpoint finished leaves it: no step 20,
  # the commit point at 10. It resumes from 10.
  shutil.rmtree(os.path.join(workdir, 'checkpoints', '20'))
  workdir_lib.set_status(workdir, 'running', 19, checkpoint=10)
  final = train.train_and_evaluate(config, workdir)
  rows = [r for r in workdir_lib.read_metrics(workdir)
          if r['name'] == 'toy/param_sq_norm']
  assert [r['step'] for r in rows] == [0, 3, 10, 20]
  want = 2.0 * sum(float(np.sum(np.square(np.asarray(x, np.float64))))
                   for x in jax.tree.leaves(load_params(workdir, 20)))
  np.testing.assert_allclose(final['toy/param_sq_norm'], want, rtol=1e-6)
  # Its state came back from the step-10 checkpoint: calls at 0, 3, 10, 20.
  np.testing.assert_array_equal(
      np.load(os.path.join(workdir, 'toy_calls.npy')), [0, 3, 10, 20])


def test_shares_of_several_batches_use_their_examples_in_order():
  """batches=2 at step 3: the examples of updates 4 and 5, designated by
  their own is_noisy, against explicit per-example gradients."""
  config = mnist_mlp.get_config('digits,runlocal,noise=0.5,width=8,depth=1')
  dataset = data_lib.load(config.data, config.noise)
  model = models.get_model('mlp', dataset.num_classes, widths=(8,))
  loader = pipeline.TrainLoader(dataset.train, 50, seed=0)
  ctx = measurements.Context(config=config, dataset=dataset, model=model,
                             mesh=parallel.make_mesh(), loader=loader,
                             param_paths=[], group_of=None, workdir='')
  cfg = measurements.spec('loss_shares', batches=2, null_permutations=1)
  params = model.init(jax.random.key(0), dataset.train.images[:1],
                      train=False)['params']
  state = types.SimpleNamespace(params=params, batch_stats={})
  got = loss_shares.Measurement('shares', cfg, ctx).run(state, 3)

  index = np.concatenate([loader.global_indices(3), loader.global_indices(4)])
  def one(p, i):
    logits = model.apply({'params': p}, dataset.train.images[i:i + 1])
    return losses.cross_entropy(logits, dataset.train.labels[i:i + 1])[0]
  flat = lambda g: np.concatenate([np.asarray(x, np.float64).ravel()
                                   for x in jax.tree.leaves(g)])
  grads = np.stack([flat(jax.grad(one)(params, i)) for i in index])
  noisy = dataset.train.is_noisy[index]
  g = grads.sum(0)
  np.testing.assert_allclose(got['shares/f_p'],
                             g @ grads[~noisy].sum(0) / (g @ g), rtol=1e-4)
  np.testing.assert_allclose(got['shares/pristine_frac'], np.mean(~noisy))


def test_a_long_measurement_says_it_is_still_running():
  """Lines while the block runs (the block waits for two of them, so no
  wall-clock bound is assumed), none after it ends."""
  lines, two = [], threading.Event()

  def log(line):
    lines.append(line)
    if len(lines) == 2:
      two.set()

  with measurements.still_running(log, 'step 0: probe still measuring',
                                  seconds=0.01):
    assert two.wait(60)
  count = len(lines)
  assert lines[0].startswith('step 0: probe still measuring (')
  assert lines[0].endswith('s so far)')
  threading.Event().wait(0.05)
  assert len(lines) == count  # the thread ended with the block
