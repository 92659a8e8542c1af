"""Aggregators against independent numpy implementations (sorts, medians)."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from cgjax import aggregators
from cgjax import parallel
from cgjax.models import mlp
from tests.conftest import run_python


def _cfg(name, c=1, k=3, warmup='skip'):
  return ml_collections.ConfigDict({'aggregator': name, 'winsorize_c': c,
                                    'm3_groups': k, 'rm3_warmup': warmup})


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

  def loss_fn(p, batch, group=None):  # pylint: disable=unused-argument
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


def _authors_policy(name, t):
  """The CG code's policies (iclr_2020_paper/utils.py), ported to numpy:
  t [..., m] holds each example's gradient of the batch-mean loss."""
  if name == 'sign_sum':
    return 0.001 * np.sign(t.sum(axis=-1))
  return 0.001 * np.sign(t).sum(axis=-1)


@pytest.mark.parametrize('name', ['sign_sum', 'sum_sign'])
def test_sign_policies_match_the_authors_numpy(name):
  params, batch, loss_fn, per_ex = _problem(batch=12, duplicate=False)
  fn = aggregators.make_gradient_fn(_cfg(name), loss_fn, per_ex,
                                    parallel.make_mesh())
  loss, grads, _ = jax.jit(fn)(params, batch)
  per_example = _per_example_grads(params, batch, per_ex)
  expect = jax.tree.map(lambda g: _authors_policy(
      name, np.moveaxis(g.astype(np.float64) / 12, 0, -1)), per_example)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-12),
               grads, expect)
  np.testing.assert_allclose(loss, loss_fn(params, batch)[0], rtol=1e-6)
  # The examples disagree on some coordinates (a vote, not a unanimous sign).
  if name == 'sum_sign':
    votes = np.concatenate([np.abs(np.ravel(g)) for g in
                            jax.tree.leaves(grads)])
    assert ((votes > 0) & (votes < 0.012 - 1e-9)).any()


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
    ('rm3', {'warmup': 'fill'}, "optim.rm3_warmup must be one of .'skip', 'repeat'., got 'fill'"),
])
def test_bad_settings_are_named(name, bad, match):
  with pytest.raises(ValueError, match=match):
    aggregators.check(_cfg(name, **bad), batch_size=12)


class AuthorsRing:
  """The rule of the authors' RM3 / RA3 / M3 (weak_and_strong/optimizers),
  one parameter in numpy: d = grad + wd * w; the first d fills a 3-slot
  buffer and sets the counter to 1, each later one goes to slot counter % 3;
  an update along median / mean of the buffer once the counter is >= 3
  (M3: and divisible by 3)."""

  def __init__(self, name, lr, weight_decay=0.0):
    self.name, self.lr, self.wd = name, lr, weight_decay
    self.buffer, self.counter = None, 0

  def step(self, w, grad):
    d = grad + self.wd * w
    if self.buffer is None:
      self.buffer, self.counter = [d.copy(), d.copy(), d.copy()], 1
    else:
      self.buffer[self.counter % 3] = d.copy()
      self.counter += 1
    if self.counter < 3 or (self.name == 'm3' and self.counter % 3):
      return w
    b = np.stack(self.buffer)
    direction = (b.sum(0) - b.min(0) - b.max(0) if self.name != 'ra3'
                 else b.sum(0) / 3)
    return w - self.lr * direction


@pytest.mark.parametrize('name', ['rm3', 'ra3'])
@pytest.mark.parametrize('warmup', ['skip', 'repeat'])
def test_running_median_and_mean_of_three(name, warmup):
  rng = np.random.default_rng(1)
  updates = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(6)]
  updates[3] = updates[2].copy()  # ties
  tx = aggregators.transformation(_cfg(name, warmup=warmup))
  state = tx.init({'w': jnp.zeros((4, 3))})
  authors = AuthorsRing(name, lr=-1.0)  # w - lr * direction = direction
  for i, u in enumerate(updates):
    out, state = tx.update({'w': jnp.asarray(u)}, state)
    expect = authors.step(np.zeros((4, 3)), u.astype(np.float64))
    if warmup == 'repeat' and i < 2:  # copies of the first stand in
      window = np.stack(([updates[0]] * 3 + updates[:i + 1])[-3:])
      expect = (np.median if name == 'rm3' else np.mean)(window, 0)
    np.testing.assert_allclose(out['w'], expect, rtol=1e-6, atol=1e-7)
  assert authors.counter == 6


def _softmax_regression(seed=0, dim=6, classes=3):
  """(w0, loss_fn, numpy mean gradient) of softmax regression."""
  rng = np.random.default_rng(seed)
  w0 = rng.normal(0, 0.3, (dim, classes))

  def loss_fn(w, batch, group=None):  # pylint: disable=unused-argument
    logp = jax.nn.log_softmax(batch['x'] @ w['w'])
    per_example = -jnp.take_along_axis(logp, batch['y'][:, None], 1)[:, 0]
    return jnp.mean(per_example), None

  def grad_np(w, x, y):
    z = x @ w
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return x.T @ p / len(y)

  return w0, loss_fn, grad_np


@pytest.mark.parametrize('name', ['m3', 'rm3', 'ra3'])
def test_trajectory_matches_the_authors_optimizer(name):
  """Nine minibatches of 4 through the authors' rule (weight decay 0.01,
  lr 0.5) and through cgjax: rm3 / ra3 one minibatch a step, m3 one batch of
  12 a step whose strided group g is the authors' minibatch 3t + g."""
  from cgjax import optim  # pylint: disable=g-import-not-at-top
  w0, loss_fn, grad_np = _softmax_regression()
  rng = np.random.default_rng(2)
  xs = rng.normal(size=(9, 4, 6))
  ys = rng.integers(0, 3, (9, 4))
  authors, w = AuthorsRing(name, lr=0.5, weight_decay=0.01), w0.copy()
  for x, y in zip(xs, ys):
    w = authors.step(w, grad_np(w, x, y))
  cfg = ml_collections.ConfigDict(dict(
      name='sgd', lr=0.5, momentum=0.0, nesterov=False, b1=0.9, b2=0.999,
      weight_decay=0.01, schedule='constant', warmup_steps=0,
      step_boundaries=(0.5,), step_factor=0.1, schedule_every=1,
      aggregator=name, winsorize_c=1, m3_groups=3, rm3_warmup='skip'))
  tx = optim.make_optimizer(cfg, 9)
  fn = jax.jit(aggregators.make_gradient_fn(cfg, loss_fn, None,
                                            parallel.make_mesh()))
  params = {'w': jnp.asarray(w0, jnp.float32)}
  state = tx.init(params)
  if name == 'm3':  # rows g, g + 3, ... of a batch of 12 = minibatch 3t + g
    batches = [{'x': np.stack(xs[3 * t:3 * t + 3], 1).reshape(12, 6),
                'y': np.stack(ys[3 * t:3 * t + 3], 1).reshape(12)}
               for t in range(3)]
  else:
    batches = [{'x': x, 'y': y} for x, y in zip(xs, ys)]
  for batch in batches:
    batch = jax.tree.map(lambda a: jnp.asarray(a, jnp.int32 if a.dtype.kind
                                               == 'i' else jnp.float32), batch)
    _, grads, _ = fn(params, batch)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  assert not np.allclose(w, w0)
  np.testing.assert_allclose(params['w'], w, rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # 15-50 s: 8 devices or a deep model
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
    assert c.num_steps == 90 * (1_281_167 // c.batch_size)    # Each of 8 GPUs normalizes its 256 / 8 examples (of each M3 group);
    # the lr changes once an epoch; no RM3 / RA3 update before 3 gradients.
    assert c.bn_group_size == 32
    assert c.optim.schedule_every == 1_281_167 // c.batch_size
    assert c.optim.rm3_warmup == 'skip'
    assert c.optim.weight_decay == 0.0
  # A 500K subset (easy/hard): 90 epochs of it, the lr per epoch of it.
  c = ws_imagenet.get_config('train_examples=500000,weight_decay=1e-4')
  assert c.num_steps == 90 * (500_000 // 256)
  assert c.optim.schedule_every == 500_000 // 256
  assert c.optim.weight_decay == 1e-4
  lr = optim.make_schedule(c.optim, c.num_steps)
  epoch = 500_000 // 256
  assert [float(lr(e * epoch)) for e in (29, 30, 59, 60)] == pytest.approx(
      [0.1, 0.01, 0.01, 0.001])


@pytest.mark.slow  # 15-50 s: 8 devices or a deep model
@pytest.mark.parametrize('dropout', [0.5, 0.0])
def test_m3_groups_draw_independent_dropout_masks(dropout):
  """VGG-13-BN (dropout in its classifier), an m3 step on a batch whose three
  groups are one minibatch repeated, against the plain step on that
  minibatch. Sharing the step's masks, the three group gradients would be
  equal and the median that plain gradient; each group's own masks make
  them differ. Without dropout the two steps agree, so the difference is
  the masks'."""
  from cgjax import train  # pylint: disable=g-import-not-at-top
  from cgjax.configs import common  # pylint: disable=g-import-not-at-top
  from cgjax.models import vgg  # pylint: disable=g-import-not-at-top
  model = vgg.Model(num_classes=3, depth=13, width=2, hidden=8,
                    dropout=dropout)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
  labels = np.array([0, 2], np.int32)
  variables = model.init(jax.random.key(0), images, train=False)
  updated = {}
  for name, rows in (('mean', 1), ('m3', 3)):
    cfg = common.base_config().optim
    cfg.update(aggregator=name, m3_groups=3)
    state = train.TrainState.create(
        apply_fn=model.apply, params=variables['params'],
        batch_stats=variables['batch_stats'], tx=optax.sgd(0.1))
    step = jax.jit(train.make_train_step(model, cfg, parallel.make_mesh()))
    # Rows 3i + g = example i: group g (rows g, g + 3) is the minibatch.
    batch = {'image': np.repeat(images, rows, 0),
             'label': np.repeat(labels, rows, 0),
             'weight': np.ones(2 * rows, np.float32)}
    updated[name] = step(state, batch)[0].params
  diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
      jax.tree.leaves(updated['mean']), jax.tree.leaves(updated['m3'])))
  if dropout:
    assert diff > 1e-5, diff
  else:
    assert diff < 1e-6, diff
