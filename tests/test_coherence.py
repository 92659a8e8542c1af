"""m-coherence against closed forms, an explicit per-example loop and limits."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cgjax import coherence
from cgjax.models import mlp


def _linear_loss(params, ex):
  return 0.5 * (jnp.dot(params['w'], ex['x']) + params['b'] - ex['y']) ** 2


def test_linear_model_closed_form():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(32, 5)).astype(np.float32)
  y = rng.normal(size=32).astype(np.float32)
  w, b = rng.normal(size=5).astype(np.float32), np.float32(0.3)
  # Independent derivation: g_i = r_i * (x_i, 1), r_i = w.x_i + b - y_i.
  r = x.astype(np.float64) @ w + b - y
  gw, gb = r[:, None] * x, r
  expect_w = (gw.sum(0) ** 2).sum() / (gw ** 2).sum()
  expect_b = gb.sum() ** 2 / (gb ** 2).sum()
  expect = ((gw.sum(0) ** 2).sum() + gb.sum() ** 2) / ((gw ** 2).sum()
                                                       + (gb ** 2).sum())
  out = coherence.m_coherence(_linear_loss, {'w': jnp.array(w), 'b': jnp.array(b)},
                              {'x': x, 'y': y}, microbatch_size=8)
  assert out['m'] == 32
  np.testing.assert_allclose(out['m_coherence'], expect, rtol=1e-5)
  np.testing.assert_allclose(out['alpha'], expect / 32, rtol=1e-5)
  np.testing.assert_allclose(out['per_layer']['w'], expect_w, rtol=1e-5)
  np.testing.assert_allclose(out['per_layer']['b'], expect_b, rtol=1e-5)
  np.testing.assert_allclose(out['sum_of_sq_norms'],
                             (gw ** 2).sum() + (gb ** 2).sum(), rtol=1e-5)
  np.testing.assert_allclose(out['mean_loss'], np.mean(0.5 * r ** 2), rtol=1e-5)


def test_mlp_matches_explicit_per_example_loop():
  model = mlp.Model(num_classes=4, widths=(16, 8))
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, size=(12, 4, 4, 1)).astype(np.uint8)
  labels = rng.integers(0, 4, size=12).astype(np.int32)
  params = model.init(jax.random.key(0), images[:1])['params']

  def loss(p, ex):
    logits = model.apply({'params': p}, ex['image'][None])[0]
    return -jax.nn.log_softmax(logits)[ex['label']]

  grads = [jax.grad(loss)(params, {'image': images[i], 'label': labels[i]})
           for i in range(12)]
  paths = coherence.leaf_paths(params)
  # per_leaf[j][i] = example i's gradient of leaf j, flattened, float64.
  per_leaf = [np.stack([np.asarray(jax.tree.leaves(g)[j], np.float64).ravel()
                        for g in grads]) for j in range(len(paths))]
  out = coherence.m_coherence(loss, params, {'image': images, 'label': labels},
                              microbatch_size=4)
  num = den = 0.0
  for path, g in zip(paths, per_leaf):
    s, d = (g.sum(0) ** 2).sum(), (g ** 2).sum()
    num, den = num + s, den + d
    np.testing.assert_allclose(out['per_layer'][path], s / d, rtol=1e-4)
  assert set(out['per_layer']) == {'dense0/kernel', 'dense0/bias',
                                   'dense1/kernel', 'dense1/bias',
                                   'head/kernel', 'head/bias'}
  np.testing.assert_allclose(out['m_coherence'], num / den, rtol=1e-4)
  np.testing.assert_allclose(out['sq_norm_of_sum'], num, rtol=1e-4)
  np.testing.assert_allclose(out['sum_of_sq_norms'], den, rtol=1e-4)


@pytest.mark.parametrize('m', [1, 7, 64])
def test_identical_examples_give_m(m):
  x = np.tile(np.array([[0.5, -1.0, 2.0]], np.float32), (m, 1))
  params = {'w': jnp.array([0.1, 0.2, 0.3]), 'b': jnp.array(0.0)}
  out = coherence.m_coherence(_linear_loss, params,
                              {'x': x, 'y': np.ones(m, np.float32)})
  np.testing.assert_allclose(out['m_coherence'], m, rtol=1e-5)
  np.testing.assert_allclose(out['alpha'], 1.0, rtol=1e-5)


def test_orthogonal_gradients_give_one():
  m = 6  # one-hot inputs and zero bias grads: g_i = r_i e_i, pairwise orthogonal
  params = {'w': jnp.zeros(m)}
  loss = lambda p, ex: 0.5 * (jnp.dot(p['w'], ex['x']) - ex['y']) ** 2
  out = coherence.m_coherence(loss, params, {'x': np.eye(m, dtype=np.float32),
                                             'y': np.arange(1, m + 1, dtype=np.float32)})
  np.testing.assert_allclose(out['m_coherence'], 1.0, rtol=1e-6)


def test_opposite_gradients_give_zero():
  params = {'w': jnp.zeros(2)}
  loss = lambda p, ex: 0.5 * (jnp.dot(p['w'], ex['x']) - ex['y']) ** 2
  x = np.array([[1.0, 2.0], [1.0, 2.0]], np.float32)
  out = coherence.m_coherence(loss, params, {'x': x, 'y': np.array([1.0, -1.0], np.float32)})
  assert out['m_coherence'] == pytest.approx(0.0, abs=1e-7)


def test_scale_invariance():
  rng = np.random.default_rng(2)
  x, y = rng.normal(size=(10, 3)).astype(np.float32), rng.normal(size=10).astype(np.float32)
  params = {'w': jnp.array([0.5, -0.5, 1.0]), 'b': jnp.array(0.1)}
  a = coherence.m_coherence(_linear_loss, params, {'x': x, 'y': y})
  scaled = lambda p, ex: 9.0 * _linear_loss(p, ex)
  b = coherence.m_coherence(scaled, params, {'x': x, 'y': y})
  np.testing.assert_allclose(a['m_coherence'], b['m_coherence'], rtol=1e-5)


def test_weight_zero_padding_changes_nothing():
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(10, 3)).astype(np.float32), rng.normal(size=10).astype(np.float32)
  params = {'w': jnp.array([0.5, -0.5, 1.0]), 'b': jnp.array(0.1)}
  ref = coherence.m_coherence(_linear_loss, params, {'x': x, 'y': y})
  xp = np.concatenate([x, rng.normal(size=(6, 3)).astype(np.float32)])
  yp = np.concatenate([y, rng.normal(size=6).astype(np.float32)])
  weights = np.r_[np.ones(10), np.zeros(6)].astype(np.float32)
  out = jax.device_get(coherence.coherence_stats(
      _linear_loss, params, {'x': xp, 'y': yp}, weights, microbatch_size=4))
  assert out['m'] == 10
  np.testing.assert_allclose(out['m_coherence'], ref['m_coherence'], rtol=1e-5)
  np.testing.assert_allclose(out['mean_loss'], ref['mean_loss'], rtol=1e-5)


def test_batchnorm_model_uses_running_statistics_per_example():
  """With BN, each g_i is the gradient of example i alone in eval mode."""
  from cgjax import train  # pylint: disable=g-import-not-at-top
  from cgjax.models import resnet  # pylint: disable=g-import-not-at-top
  model = resnet.Model(num_classes=3, depth=18, width=8, small_inputs=True)
  rng = np.random.default_rng(4)
  images = rng.integers(0, 256, size=(6, 8, 8, 3)).astype(np.uint8)
  labels = rng.integers(0, 3, size=6).astype(np.int32)
  variables = model.init(jax.random.key(1), images[:1])
  # Non-trivial running statistics, as after some training.
  batch_stats = jax.tree.map(
      lambda x: x + jnp.asarray(rng.uniform(0.1, 0.5, x.shape), x.dtype),
      variables['batch_stats'])
  params = variables['params']

  def loss_one(p, image, label):  # independent: a 1-example eval-mode batch
    logits = model.apply({'params': p, 'batch_stats': batch_stats},
                         image[None], train=False)[0]
    return -jax.nn.log_softmax(logits)[label]

  flat = lambda g: np.concatenate([np.asarray(x, np.float64).ravel()
                                   for x in jax.tree.leaves(g)])
  grads = np.stack([flat(jax.grad(loss_one)(params, images[i], labels[i]))
                    for i in range(6)])
  expect = (grads.sum(0) ** 2).sum() / (grads ** 2).sum()
  stats = jax.device_get(coherence.coherence_stats(
      train.make_per_example_loss(model), params,
      {'image': images, 'label': labels}, None, batch_stats,
      microbatch_size=3))
  np.testing.assert_allclose(stats['m_coherence'], expect, rtol=1e-4)


SHARDED_CHECK = """
import jax, numpy as np
from cgjax import coherence, parallel, train
from cgjax.models import cnn, resnet
assert jax.device_count() == 8
mesh = parallel.make_mesh()
rng = np.random.default_rng(0)
for model in (cnn.Model(num_classes=3, channels=(4, 8), hidden=8),
              resnet.Model(num_classes=3, depth=18, width=8, small_inputs=True)):
  x = rng.integers(0, 256, (16, 8, 8, 3)).astype(np.uint8)
  y = rng.integers(0, 3, 16).astype(np.int32)
  v = model.init(jax.random.key(0), x[:1])
  loss = train.make_per_example_loss(model)
  stats = v.get('batch_stats', {})
  one = coherence.coherence_stats(loss, v['params'], {'image': x, 'label': y},
                                  None, stats, microbatch_size=4)
  rows = parallel.to_global({'image': x, 'label': y,
                             'w': np.ones(16, np.float32)}, mesh)
  w = rows.pop('w')
  eight = coherence.sharded_coherence_stats(loss, mesh, v['params'], rows, w,
                                            stats, microbatch_size=1)
  for k in ('m_coherence', 'sum_of_sq_norms', 'sq_norm_of_sum', 'mean_loss'):
    np.testing.assert_allclose(eight[k], one[k], rtol=1e-4, err_msg=k)
print('OK')
"""


def test_sharded_probes_equal_one_device_for_conv_and_batchnorm():
  """Per-device per-example gradients, sums reduced across 8 devices."""
  from tests.conftest import run_python  # pylint: disable=g-import-not-at-top
  assert 'OK' in run_python(['-c', SHARDED_CHECK], devices=8).stdout
