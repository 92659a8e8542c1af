"""Aggregators against independent numpy implementations (sorts, medians)."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cgjax import aggregators
from cgjax import parallel
from cgjax.models import mlp
from tests.conftest import run_python


def _cfg(name, c=1, k=3):
  return ml_collections.ConfigDict({'aggregator': name, 'winsorize_c': c,
                                    'm3_groups': k})


def winsorize_np(per_example: np.ndarray, c: int) -> np.ndarray:
  """Sort each coordinate's B values; clip to s[c], s[B-1-c]; average."""
  flat = per_example.reshape(len(per_example), -1).astype(np.float64)
  out = np.empty(flat.shape[1])
  for j in range(flat.shape[1]):
    s = np.sort(flat[:, j])
    out[j] = np.mean(np.clip(flat[:, j], s[c], s[len(s) - 1 - c]))
  return out.reshape(per_example.shape[1:])


def _problem(batch=12, seed=0, duplicate=True, model=None, shape=(3, 3, 1)):
  """(params, batch, loss_fn, per_example_loss) of a 3-class model (a
  small MLP by default) on random images of `shape`."""
  model = model or mlp.Model(num_classes=3, widths=(5,))
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (batch,) + shape).astype(np.uint8)
  labels = rng.integers(0, 3, batch).astype(np.int32)
  if duplicate:  # identical examples: tied gradient values
    images[1], labels[1] = images[0], labels[0]
    images[2], labels[2] = images[0], labels[0]
  params = model.init(jax.random.key(seed), images[:1])['params']

  def per_example_loss(p, ex):
    logits = model.apply({'params': p}, ex['image'][None])[0]
    return -jax.nn.log_softmax(logits)[ex['label']]

  def loss_fn(p, batch):
    losses = jax.vmap(per_example_loss, in_axes=(None, 0))(p, batch)
    return jnp.sum(losses * batch['weight']) / jnp.sum(batch['weight']), None

  batch = {'image': images, 'label': labels,
           'weight': np.ones(batch, np.float32)}
  return params, batch, loss_fn, per_example_loss


def _per_example_grads(params, batch, per_example_loss):
  grads = [jax.grad(per_example_loss)(params, {'image': batch['image'][i],
                                               'label': batch['label'][i]})
           for i in range(len(batch['label']))]
  return jax.tree.map(lambda *g: np.stack(g), *grads)


# c + 1 <= aggregators.TOURNAMENT_MAX_K: tournament; above it: the row scan.
@pytest.mark.parametrize('c', [0, 1, 2, 3])
def test_winsorize_matches_numpy_sorting_with_ties(c, monkeypatch):
  monkeypatch.setattr(aggregators, 'TILE', 7)  # several tiles, the last padded
  params, batch, loss_fn, per_ex = _problem()
  fn = aggregators.make_gradient_fn(_cfg('winsorize', c=c), loss_fn, per_ex,
                                    parallel.make_mesh())
  loss, grads, _ = jax.jit(fn)(params, batch)
  expect = jax.tree.map(lambda g: winsorize_np(g, c),
                        _per_example_grads(params, batch, per_ex))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-7), grads, expect)
  np.testing.assert_allclose(loss, loss_fn(params, batch)[0], rtol=1e-6)
  if c == 0:  # no clipping: the plain mean gradient
    plain = jax.grad(lambda p: loss_fn(p, batch)[0])(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                         atol=1e-7),
                 grads, plain)


def test_m3_is_the_median_of_strided_group_means():
  params, batch, loss_fn, per_ex = _problem(batch=12)
  fn = aggregators.make_gradient_fn(_cfg('m3', k=3), loss_fn, per_ex,
                                    parallel.make_mesh())
  _, grads, _ = jax.jit(fn)(params, batch)
  per_example = _per_example_grads(params, batch, per_ex)
  # Group g holds rows g, g + 3, ...; its gradient is their mean.
  expect = jax.tree.map(
      lambda g: np.median(np.stack([g[i::3].astype(np.float64).mean(0)
                                    for i in range(3)]), axis=0), per_example)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-7), grads, expect)


@pytest.mark.parametrize('name,bad,match', [
    ('m3', {'k': 5}, 'optim.m3_groups=5 must be >= 1 and divide the batch size 12'),
    ('winsorize', {'c': 6}, 'optim.winsorize_c=6 must leave two order statistics in a batch of 12: at most 5'),
    ('winsorize', {'c': -1}, 'optim.winsorize_c must be >= 0, got -1'),
    ('median', {}, "unknown optim.aggregator 'median'"),
])
def test_bad_settings_are_named(name, bad, match):
  with pytest.raises(ValueError, match=match):
    aggregators.check(_cfg(name, **bad), batch_size=12)


@pytest.mark.parametrize('name', ['rm3', 'ra3'])
def test_running_median_and_mean_of_three(name):
  rng = np.random.default_rng(1)
  updates = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(6)]
  updates[3] = updates[2].copy()  # ties
  tx = aggregators.transformation(_cfg(name))
  state = tx.init({'w': jnp.zeros((4, 3))})
  history = []
  for u in updates:
    history.append(u.astype(np.float64))
    out, state = tx.update({'w': jnp.asarray(u)}, state)
    # The last three gradients, the first standing in for missing ones.
    window = ([history[0]] * 3 + history)[-3:]
    combine = np.median if name == 'rm3' else np.mean
    np.testing.assert_allclose(out['w'], combine(np.stack(window), 0),
                               rtol=1e-6, atol=1e-7)


def test_eight_devices_equal_the_numpy_result():
  """Global-batch order statistics and group medians with a sharded batch."""
  assert 'OK' in run_python(['-m', 'tests.sharded_checks', 'aggregators'],
                            devices=8).stdout


def test_weak_and_strong_optimizers_train_at_the_papers_lr():
  """M3 takes 3 minibatches of 256 per update at lr 0.1, never scaled."""
  from cgjax import optim, train  # pylint: disable=g-import-not-at-top
  from configs import ws_imagenet  # pylint: disable=g-import-not-at-top
  for name in ('sgd', 'm3', 'rm3', 'ra3'):
    c = ws_imagenet.get_config(f'optimizer={name},noise=0.5')
    train.validate(c)
    assert optim.make_schedule(c.optim, c.num_steps)(0) == pytest.approx(0.1)
    assert c.optim.momentum == (0.9 if name == 'sgd' else 0.0)
    assert c.optim.aggregator == ('mean' if name == 'sgd' else name)
    assert c.batch_size == (768 if name == 'm3' else 256)
    # 90 epochs of ImageNet whatever the batch.
    assert c.num_steps == 90 * (1_281_167 // c.batch_size)