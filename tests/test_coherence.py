"""Coherence metrics against closed forms, explicit float64 loops and limits."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

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
  np.testing.assert_allclose(out['per_layer']['w']['m_coherence'], expect_w,
                             rtol=1e-5)
  np.testing.assert_allclose(out['per_layer']['b']['m_coherence'], expect_b,
                             rtol=1e-5)
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
    np.testing.assert_allclose(out['per_layer'][path]['m_coherence'], s / d,
                               rtol=1e-4)
  assert set(out['per_layer']) == {'dense0/kernel', 'dense0/bias',
                                   'dense1/kernel', 'dense1/bias',
                                   'head/kernel', 'head/bias'}
  np.testing.assert_allclose(out['m_coherence'], num / den, rtol=1e-4)
  np.testing.assert_allclose(out['sq_norm_of_sum'], num, rtol=1e-4)
  np.testing.assert_allclose(out['sum_of_sq_norms'], den, rtol=1e-4)


def _explicit_float64(grads_per_leaf, losses, classes, pairs):
  """Every metric by definition: loops over examples and pairs, float64."""
  g = np.concatenate(grads_per_leaf, 1)  # [m, P]
  m = len(g)
  norms = np.linalg.norm(g, axis=1)
  total = (g.sum(0) ** 2).sum() / (g ** 2).sum()
  cos = lambda i, j: g[i] @ g[j] / (norms[i] * norms[j])
  all_pairs = [(i, j) for i in range(m) for j in range(m) if i != j]
  mean = g.mean(0)
  var = g.var(0)
  ok = np.any(g != g[0], 0)  # GSNR leaves out constant coordinates
  stiff = {}
  for rel, same in (('same', True), ('diff', False)):
    sel = [(i, j) for i, j in pairs if (classes[i] == classes[j]) == same]
    stiff[f'sign_{rel}_class'] = np.mean([np.sign(g[i] @ g[j]) for i, j in sel])
    stiff[f'cos_{rel}_class'] = np.mean([cos(i, j) for i, j in sel])
  return {
      'block_gradient_confusion': min(g[i] @ g[j] for i, j in pairs),
      'm_coherence': total, 'alpha': total / m,
      'gradient_diversity': (norms ** 2).sum() / (g.sum(0) ** 2).sum(),
      'avg_cosine': np.mean([cos(i, j) for i, j in all_pairs]),
      'gsnr': np.mean(mean[ok] ** 2 / var[ok]),
      'stiffness': stiff,
      'loss': {f'q{round(100 * q)}': np.quantile(losses, q)
               for q in coherence.QUANTILES},
      'grad_norm': {f'q{round(100 * q)}': np.quantile(norms, q)
                    for q in coherence.QUANTILES},
  }


@pytest.mark.parametrize('microbatch', [12, 4])
def test_every_metric_matches_explicit_float64_loops(microbatch):
  model = mlp.Model(num_classes=3, widths=(16, 8))
  rng = np.random.default_rng(5)
  m = 12
  images = rng.integers(0, 256, size=(m, 4, 4, 1)).astype(np.uint8)
  labels = rng.integers(0, 3, size=m).astype(np.int32)
  params = model.init(jax.random.key(0), images[:1])['params']

  def loss(p, ex):
    logits = model.apply({'params': p}, ex['image'][None])[0]
    return -jax.nn.log_softmax(logits)[ex['label']]

  examples = [{'image': images[i], 'label': labels[i]} for i in range(m)]
  grads = [jax.tree.leaves(jax.grad(loss)(params, ex)) for ex in examples]
  per_leaf = [np.stack([np.asarray(gr[j], np.float64).ravel() for gr in grads])
              for j in range(len(grads[0]))]
  losses = np.array([float(loss(params, ex)) for ex in examples])
  # Stiffness pairs: within each microbatch, which holds every
  # (m / microbatch)-th example (column-major split).
  stride = m // microbatch
  pairs = [(i, j) for i in range(m) for j in range(m)
           if i != j and i % stride == j % stride]
  expect = _explicit_float64(per_leaf, losses, labels, pairs)
  out = coherence.m_coherence(loss, params, {'image': images, 'label': labels},
                              classes=labels, microbatch_size=microbatch,
                              group_of=lambda p: 'hidden' if p.startswith(
                                  'dense') else 'out')
  for k, v in expect.items():
    np.testing.assert_allclose(jax.tree.leaves(out[k]), jax.tree.leaves(v),
                               rtol=1e-4, atol=1e-6, err_msg=k)
  # Per layer group: the ratio of the group's sums, alpha = m-coherence / m.
  hidden = np.concatenate(per_leaf[:4], 1)
  expect_hidden = (hidden.sum(0) ** 2).sum() / (hidden ** 2).sum()
  np.testing.assert_allclose(out['per_group']['hidden']['m_coherence'],
                             expect_hidden, rtol=1e-4)
  np.testing.assert_allclose(out['per_group']['hidden']['alpha'],
                             expect_hidden / m, rtol=1e-4)
  head = np.concatenate(per_leaf[4:], 1)
  var = head.var(0)
  np.testing.assert_allclose(out['per_group']['out']['gsnr'], np.mean(
      head.mean(0)[var > 0] ** 2 / var[var > 0]), rtol=1e-4)


class _DeadUnits(nn.Module):
  """A hidden layer whose last 4 of 8 units never fire: their weights'
  loss gradient is 0 for every example."""

  @nn.compact
  def __call__(self, x):
    h = nn.Dense(8)(x.reshape(x.shape[0], -1).astype(jnp.float32) / 255)
    h = nn.relu(h - jnp.where(jnp.arange(8) >= 4, 1e3, 0))
    return nn.Dense(3)(h)


@pytest.mark.parametrize('m, microbatch', [(37, None), (74, 37)])
def test_prime_m_and_an_l2_term_match_explicit_float64_loops(m, microbatch,
                                                            monkeypatch):
  """An L2 term makes the dead units' per-example gradients a constant
  2 lam w (one-pass float32 variance: GSNR 54,324 instead of 0.28), and
  m = 37 left no stiffness pairs (NaN) when blocks had to divide m."""
  model = _DeadUnits()
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, size=(m, 3, 3, 1)).astype(np.uint8)
  labels = rng.integers(0, 3, size=m).astype(np.int32)
  params = model.init(jax.random.key(0), images[:1])['params']

  def loss(p, ex):
    logits = model.apply({'params': p}, ex['image'][None])[0]
    l2 = sum(jnp.sum(w ** 2) for w in jax.tree.leaves(p))
    return -jax.nn.log_softmax(logits)[ex['label']] + 1e-3 * l2

  grad = jax.jit(jax.grad(loss))
  grads = [jax.tree.leaves(grad(params, {'image': images[i],
                                         'label': labels[i]}))
           for i in range(m)]
  per_leaf = [np.stack([np.asarray(gr[j], np.float64).ravel()
                        for gr in grads]) for j in range(len(grads[0]))]
  losses = np.array([float(loss(params, {'image': images[i],
                                         'label': labels[i]}))
                     for i in range(m)])
  # Stiffness blocks of at most 24 here: each microbatch (every
  # (m / microbatch)-th example) of 37 in two consecutive blocks, 19 + 18.
  stride = m // (microbatch or m)
  position = np.arange(m) // stride
  pairs = [(i, j) for i in range(m) for j in range(m) if i != j
           and i % stride == j % stride and position[i] // 19 == position[j]
           // 19]
  expect = _explicit_float64(per_leaf, losses, labels, pairs)
  constant = ~np.any(np.concatenate(per_leaf, 1) != np.concatenate(
      per_leaf, 1)[0], 0)
  assert constant.sum() >= 4 * 9 + 4 + 4 * 3  # dead units' weights
  monkeypatch.setattr(coherence, 'STIFFNESS_BLOCK', 24)
  out = coherence.m_coherence(loss, params, {'image': images,
                                             'label': labels},
                              classes=labels, microbatch_size=microbatch)
  for k, v in expect.items():
    np.testing.assert_allclose(jax.tree.leaves(out[k]), jax.tree.leaves(v),
                               rtol=1e-3, atol=1e-6, err_msg=k)


def test_a_microbatch_that_does_not_divide_m_is_named():
  """The README's m_coherence(..., microbatch_size=100) at m = 256 failed
  deep inside optax."""
  with pytest.raises(ValueError, match='microbatch_size=100 does not divide '
                     'the 256 examples.*such as 64'):
    coherence.m_coherence(lambda p, ex: jnp.sum(p * ex), jnp.ones(3),
                          jnp.ones((256, 3)), microbatch_size=100)


def test_float32_accumulation_stays_accurate_for_m_4096():
  """4096 examples in 256 sequential microbatches whose gradients cancel.

  g_i = -y_i x_i with x_i = +-1000 v + noise, y_i ~ 1; the microbatches (every 256th
  example) of the first half all carry +100 v, the rest -100 v, so the running
  sums grow large and then cancel down to the noise. Plain float32 running
  sums miss these tolerances by 4-10x (checked), compensated sums meet them.
  """
  rng = np.random.default_rng(6)
  m, d = 4096, 64
  sign = np.where(np.arange(m) % 256 < 128, 1.0, -1.0)
  v = rng.normal(size=d)
  x = (1000 * sign[:, None] * v + rng.normal(size=(m, d))).astype(np.float32)
  y = (1 + 0.1 * rng.normal(size=m)).astype(np.float32)
  w = np.zeros(d, np.float32)
  params = {'w': jnp.asarray(w), 'b': jnp.asarray(np.float32(0.0))}
  out = coherence.m_coherence(_linear_loss, params, {'x': x, 'y': y},
                              microbatch_size=16)
  r = x.astype(np.float64) @ w - y
  g = np.concatenate([r[:, None] * x, r[:, None]], 1)
  u = g / np.linalg.norm(g, axis=1, keepdims=True)
  mean, var = g.mean(0), g.var(0)
  expect = {'m_coherence': (g.sum(0) ** 2).sum() / (g ** 2).sum(),
            'avg_cosine': ((u.sum(0) ** 2).sum() - m) / (m * (m - 1)),
            'gsnr': np.mean(mean ** 2 / var)}
  rtol = {'m_coherence': 1e-6, 'avg_cosine': 1e-6, 'gsnr': 3e-6}
  for k, v in expect.items():
    np.testing.assert_allclose(out[k], v, rtol=rtol[k], err_msg=k)


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
  out = coherence.summarize(coherence.coherence_stats(
      _linear_loss, params, {'x': xp, 'y': yp}, weights, microbatch_size=4),
      ['b', 'w'])
  assert out['m'] == 10
  for k in ('avg_cosine', 'gsnr', 'loss', 'grad_norm'):  # all-pairs metrics
    np.testing.assert_allclose(jax.tree.leaves(out[k]),
                               jax.tree.leaves(ref[k]), rtol=1e-5, err_msg=k)
  np.testing.assert_allclose(out['m_coherence'], ref['m_coherence'], rtol=1e-5)
  np.testing.assert_allclose(out['mean_loss'], ref['mean_loss'], rtol=1e-5)


class _TinyBN(nn.Module):
  """Dense -> BatchNorm -> ReLU -> Dense: the BN path at tiny compile cost."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Dense(6)(x.reshape(x.shape[0], -1).astype(jnp.float32) / 255)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    return nn.Dense(3)(nn.relu(x))


def test_batchnorm_model_uses_running_statistics_per_example():
  """With BN, each g_i is the gradient of example i alone in eval mode."""
  from cgjax import losses  # pylint: disable=g-import-not-at-top
  model = _TinyBN()
  rng = np.random.default_rng(4)
  images = rng.integers(0, 256, size=(6, 4, 4, 1)).astype(np.uint8)
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
  stats = coherence.summarize(coherence.coherence_stats(
      losses.make_per_example_loss(model), params,
      {'image': images, 'label': labels}, None, None, (batch_stats,),
      microbatch_size=3), coherence.leaf_paths(params))
  np.testing.assert_allclose(stats['m_coherence'], expect, rtol=1e-4)
  # A batch-statistics definition would differ: the test can tell.
  train_mode = lambda p, ex: -jax.nn.log_softmax(model.apply(
      {'params': p, 'batch_stats': batch_stats}, images, train=True,
      mutable=['batch_stats'])[0])[ex, labels[ex]]
  other = np.stack([flat(jax.grad(train_mode)(params, i)) for i in range(6)])
  assert abs((other.sum(0) ** 2).sum() / (other ** 2).sum() - expect) > 1e-3


@pytest.mark.slow  # 15-50 s: 8 devices or a deep model
def test_streamed_probes_on_eight_devices_equal_one_device():
  """Per-device per-example gradients, sums reduced across 8 devices and
  carried across padded chunks, against the one-device pass
  (tests/sharded_checks.py)."""
  from tests.conftest import run_python  # pylint: disable=g-import-not-at-top
  assert 'OK' in run_python(['-m', 'tests.sharded_checks', 'streamed_probes'],
                            devices=8).stdout


def _dot_loss(params, ex):
  """Per-example gradient = the example's own vectors (w: x, b: y)."""
  return jnp.dot(params['w'], ex['x']) + jnp.dot(params['b'], ex['y'])


def _streamed(x, y, chunk, report_m=0):
  """summarize(streamed_coherence_stats) of gradients (x_i, y_i) in chunks of
  `chunk` rows on one device, the last padded with weight-0 rows."""
  from cgjax import parallel  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh()
  m = len(x)
  chunks = []
  for start in range(0, m, chunk):
    n = min(chunk, m - start)
    pad = lambda a: np.concatenate([a[start:start + n],
                                    np.zeros((chunk - n,) + a.shape[1:],
                                             a.dtype)])
    chunks.append(({'x': jnp.asarray(pad(x)), 'y': jnp.asarray(pad(y))},
                   jnp.asarray((np.arange(chunk) < n).astype(np.float32)),
                   jnp.zeros(chunk, jnp.int32)))
  params = {'w': jnp.zeros(x.shape[1]), 'b': jnp.zeros(y.shape[1])}
  return coherence.summarize(coherence.streamed_coherence_stats(
      _dot_loss, mesh, params, iter(chunks), statistics='norms', fast=False),
      ['b', 'w'], report_m=report_m)


def _rho_and_interval(g, chunk):
  """Naive float64: rho of all rows, and the 95% t-interval (scipy's) from
  the rho of each run of `chunk` consecutive rows."""
  import scipy.stats  # pylint: disable=g-import-not-at-top
  rho = lambda a: (np.sum(a.sum(0) ** 2) / np.sum(a ** 2) - 1) / (len(a) - 1)
  parts = [rho(g[i:i + chunk]) for i in range(0, len(g), chunk)
           if len(g[i:i + chunk]) >= 2]
  low, high = scipy.stats.t.interval(0.95, len(parts) - 1, loc=rho(g),
                                     scale=scipy.stats.sem(parts))
  return rho(g), low, high


def test_rho_and_its_interval_match_a_float64_loop():
  rng = np.random.default_rng(3)
  x = (rng.normal(size=(45, 6)) + 0.7).astype(np.float32)
  y = (rng.normal(size=(45, 2)) - 0.2).astype(np.float32)
  out = _streamed(x, y, chunk=8, report_m=1000)  # 6 chunks: 5 of 8, 1 of 5
  g64 = np.concatenate([y, x], 1).astype(np.float64)
  rho, low, high = _rho_and_interval(g64, 8)
  np.testing.assert_allclose(out['rho'], rho, rtol=1e-5)
  np.testing.assert_allclose([out['rho_low'], out['rho_high']], [low, high],
                             rtol=1e-4)
  np.testing.assert_allclose(out['m_coherence_at_1000'], 1 + 999 * rho,
                             rtol=1e-5)
  np.testing.assert_allclose(out['rho'], (out['m_coherence'] - 1) / 44,
                             rtol=1e-6)
  for path, g in (('w', x), ('b', y)):
    rho, low, high = _rho_and_interval(g.astype(np.float64), 8)
    layer = out['per_layer'][path]
    np.testing.assert_allclose(
        [layer['rho'], layer['rho_low'], layer['rho_high']], [rho, low, high],
        rtol=1e-4, err_msg=path)


def test_rho_is_one_for_identical_and_zero_for_orthogonal_examples():
  row = np.array([[1.0, -2.0, 0.5]], np.float32)
  same = _streamed(np.repeat(row, 24, 0), np.ones((24, 1), np.float32), 6)
  for key in ('rho', 'rho_low', 'rho_high'):
    np.testing.assert_allclose(same[key], 1.0, rtol=1e-5, err_msg=key)
  eye = np.eye(24, dtype=np.float32) * np.arange(1, 25, dtype=np.float32)
  orthogonal = _streamed(eye, np.zeros((24, 1), np.float32), 6)
  for key in ('rho', 'rho_low', 'rho_high'):
    np.testing.assert_allclose(orthogonal[key], 0.0, atol=1e-6, err_msg=key)


@pytest.mark.parametrize('rho', [0.003, 0.05, 0.5])
def test_rho_interval_covers_the_true_rho(rho):
  """200 draws of m = 256 gradients mu + N(0, s^2 I) in 64 dimensions, rho =
  ||mu||^2 / (||mu||^2 + 64 s^2): the nominal 95% interval from 8 disjoint
  sub-samples of 32 covers it in >= 90% of them (fixed before measuring)."""
  rng = np.random.default_rng(int(rho * 1000))
  d, m, k = 64, 256, 8
  mu = np.full(d, np.sqrt(rho / d))
  s = np.sqrt((1 - rho) / d)
  covered = 0
  for _ in range(200):
    g = mu + s * rng.normal(size=(m, d))
    parts = g.reshape(k, m // k, d)
    num = np.sum(parts.sum(1) ** 2, 1)
    den = np.sum(parts ** 2, (1, 2))
    estimate = (np.sum(g.sum(0) ** 2) / np.sum(g ** 2) - 1) / (m - 1)
    low, high = coherence.rho_interval(num, den, np.full(k, m // k), estimate)
    covered += low <= rho <= high
  assert covered >= 180, covered
