"""BatchNorm in training (ghost batches) and in per-example measurements
('running' / 'batch'), against numpy forward passes of a Dense -> BN -> Dense
net."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cgjax import coherence
from cgjax import losses
from cgjax import parallel
from cgjax import train
from cgjax.configs import common
from cgjax.measurements import loss_shares

MOMENTUM = 0.9
EPS = 1e-5


class TinyBN(nn.Module):
  """Dense(5) -> BatchNorm -> ReLU -> Dense(3) on flattened float inputs."""

  @nn.compact
  def __call__(self, x, train=False):
    h = nn.Dense(5, name='dense')(x.reshape(x.shape[0], -1))
    h = nn.BatchNorm(use_running_average=not train, momentum=MOMENTUM,
                     epsilon=EPS, name='bn')(h)
    return nn.Dense(3, name='head')(nn.relu(h))


def _setup(n=12, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 2, 2, 1)).astype(np.float32)
  y = rng.integers(0, 3, n).astype(np.int32)
  model = TinyBN()
  variables = model.init(jax.random.key(seed), x[:1])
  stats = {'bn': {'mean': jnp.asarray(rng.uniform(-0.5, 0.5, 5), jnp.float32),
                  'var': jnp.asarray(rng.uniform(0.5, 2, 5), jnp.float32)}}
  return model, variables['params'], stats, x, y


def _hidden(params, x):
  """The BN input in numpy, float64."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  return x.reshape(len(x), -1) @ p['dense']['kernel'] + p['dense']['bias']


def _numpy_loss(params, x, y, mean, var):
  """Per-example cross-entropy with BN normalizing by (mean, var)."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  h = (_hidden(params, x) - mean) / np.sqrt(var + EPS)
  h = np.maximum(h * p['bn']['scale'] + p['bn']['bias'], 0)
  z = h @ p['head']['kernel'] + p['head']['bias']
  z = z - z.max(1, keepdims=True)
  return -(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1)))


@pytest.mark.parametrize('group', [0, 4])
def test_ghost_batches_normalize_each_group_with_its_own_statistics(group):
  model, params, stats, x, y = _setup()
  state = train.TrainState.create(apply_fn=model.apply, params=params,
                                  batch_stats=stats, tx=optax.sgd(0.1))
  step = jax.jit(train.make_train_step(model, common.base_config().optim,
                                       parallel.make_mesh(), 0, group))
  batch = {'image': x, 'label': y, 'weight': np.ones(len(y), np.float32)}
  new, metrics = step(state, batch)
  h = _hidden(params, x)
  groups = [h[i:i + group] for i in range(0, len(h), group)] if group else [h]
  loss = np.concatenate([_numpy_loss(params, x[i * len(g):(i + 1) * len(g)],
                                     y[i * len(g):(i + 1) * len(g)],
                                     g.mean(0), g.var(0))
                         for i, g in enumerate(groups)]).mean()
  np.testing.assert_allclose(metrics['loss'], loss, rtol=1e-5)
  old = jax.tree.map(lambda a: np.asarray(a, np.float64), stats)['bn']
  for name, stat in (('mean', np.mean), ('var', np.var)):
    expect = MOMENTUM * old[name] + (1 - MOMENTUM) * np.mean(
        [stat(g, 0) for g in groups], 0)
    np.testing.assert_allclose(new.batch_stats['bn'][name], expect,
                               rtol=1e-5, atol=1e-6)
  if group:  # differs from the global batch's normalization
    whole = _numpy_loss(params, x, y, h.mean(0), h.var(0)).mean()
    assert abs(whole - loss) > 1e-4


def test_a_group_size_that_does_not_divide_the_batch_is_named():
  config = common.base_config()
  config.bn_group_size = 7
  with pytest.raises(ValueError, match='bn_group_size=7 must be >= 0 and '
                     'divide the 100 examples of a forward pass'):
    train.validate(config)
  config.optim.update(aggregator='m3', m3_groups=4)
  config.bn_group_size = 10  # 25 examples per m3 group
  with pytest.raises(ValueError, match='divide the 25 examples of a forward '
                     r'pass \(batch_size=100 in 4 m3 groups\)'):
    train.validate(config)


def test_batch_statistics_are_the_batch_mean_and_biased_variance():
  model, params, stats, x, _ = _setup()
  got = jax.jit(losses.batch_statistics, static_argnums=0)(model, params,
                                                          stats, x)
  h = _hidden(params, x)
  np.testing.assert_allclose(got['bn']['mean'], h.mean(0), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(got['bn']['var'], h.var(0), rtol=1e-4)


def _explicit_m_coherence(params, x, y, mean, var):
  """Per-example gradients by central differences of the numpy loss with
  BN statistics fixed: ||sum g||^2 / sum ||g||^2."""
  leaves, treedef = jax.tree.flatten(params)
  shapes = [np.shape(a) for a in leaves]
  flat = np.concatenate([np.asarray(a, np.float64).ravel() for a in leaves])
  bounds = np.cumsum([0] + [int(np.prod(s)) for s in shapes])

  def unravel(p):  # numpy float64 throughout (ravel_pytree gives float32)
    return jax.tree.unflatten(treedef, [p[a:b].reshape(s) for a, b, s in
                                        zip(bounds[:-1], bounds[1:], shapes)])

  grads = np.zeros((len(y), len(flat)))
  for k in range(len(flat)):
    for sign in (1, -1):
      p = flat.copy()
      p[k] += sign * 1e-5
      grads[:, k] += sign * _numpy_loss(unravel(p), x, y, mean, var) / 2e-5
  return (grads.sum(0) ** 2).sum() / (grads ** 2).sum(), grads


def test_probe_batch_mode_holds_each_chunks_statistics_constant():
  """Two chunks of 6: each example's gradient with its chunk's statistics
  (finite differences of the numpy forward); 'running' differs."""
  model, params, stats, x, y = _setup()
  mesh = parallel.make_mesh()
  chunks = [({'image': x[i:i + 6], 'label': y[i:i + 6]},
             np.ones(6, np.float32), y[i:i + 6]) for i in (0, 6)]
  stat_fn = jax.jit(lambda im: losses.batch_statistics(model, params, stats,
                                                       im))
  out = coherence.summarize(coherence.streamed_coherence_stats(
      losses.make_per_example_loss(model), mesh, params, chunks, (stats,),
      chunk_extra=lambda ex: (stat_fn(ex['image']),)),
      coherence.leaf_paths(params))
  grads = []
  for i in (0, 6):
    h = _hidden(params, x[i:i + 6])
    grads.append(_explicit_m_coherence(params, x[i:i + 6], y[i:i + 6],
                                       h.mean(0), h.var(0))[1])
  grads = np.concatenate(grads)
  expect = (grads.sum(0) ** 2).sum() / (grads ** 2).sum()
  np.testing.assert_allclose(out['m_coherence'], expect, rtol=1e-5)
  running = coherence.summarize(coherence.streamed_coherence_stats(
      losses.make_per_example_loss(model), mesh, params, chunks, (stats,)),
      coherence.leaf_paths(params))
  assert abs(running['m_coherence'] / expect - 1) > 1e-2, running


@pytest.mark.parametrize('bn', ['running', 'batch'])
def test_loss_shares_with_constant_statistics_sum_per_example_gradients(bn):
  model, params, stats, x, y = _setup()
  is_noisy = np.arange(len(y)) % 3 == 0
  fn = jax.jit(loss_shares.make_inner_products(model, bn))
  rows = loss_shares.designations(is_noisy, 1, seed=0)
  dots = np.asarray(fn(params, stats, {'image': x, 'label': y},
                       jnp.asarray(rows)), np.float64)
  old = jax.tree.map(lambda a: np.asarray(a, np.float64), stats)['bn']
  h = _hidden(params, x)
  mean, var = ((old['mean'], old['var']) if bn == 'running'
               else (h.mean(0), h.var(0)))
  grads = _explicit_m_coherence(params, x, y, mean, var)[1]
  g, g_p = grads.sum(0), grads[~is_noisy].sum(0)
  np.testing.assert_allclose(dots[1] / dots[0], g @ g_p / (g @ g), rtol=1e-5)


def test_a_batch_mode_probe_needs_whole_chunks():
  from cgjax import measurements  # pylint: disable=g-import-not-at-top
  from cgjax.measurements import coherence as probe  # pylint: disable=g-import-not-at-top
  from configs import mnist_mlp  # pylint: disable=g-import-not-at-top
  config = mnist_mlp.get_config('runlocal')
  ctx = train.make_context(config)
  cfg = measurements.spec('coherence', m=150, microbatch_size=100, bn='batch')
  with pytest.raises(ValueError, match=r"bn='batch' normalizes by each "
                     r"chunk's statistics, so m=150 must be a multiple of the "
                     r'chunk of 100 examples'):
    probe.Measurement('probe', cfg, ctx)
  cfg.bn = 'ema'
  with pytest.raises(ValueError, match=r"measurements.probe.bn must be one of "
                     r"\('running', 'batch'\), got 'ema'"):
    probe.Measurement('probe', cfg, ctx)


def test_a_bad_shares_bn_mode_is_named():
  from cgjax import measurements  # pylint: disable=g-import-not-at-top
  from configs import mnist_mlp  # pylint: disable=g-import-not-at-top
  ctx = train.make_context(mnist_mlp.get_config('runlocal'))
  cfg = measurements.spec('loss_shares', bn='eval')
  with pytest.raises(ValueError, match=r"measurements.shares.bn must be one "
                     r"of \('train', 'running', 'batch'\), got 'eval'"):
    loss_shares.Measurement('shares', cfg, ctx)
