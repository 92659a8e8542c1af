"""The per-layer taps (cgjax/layer_norms.py) give the per-example gradient norms.

References are independent of the taps: an explicit loop of jax.grad over
single examples (float64 numpy norms) for each layer type, and the
vmap(grad) path of coherence.py for the project's models.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cgjax import coherence, layer_norms, losses, models
from tests.conftest import random_variables, run_python


def _setup(model, shape, m=5, seed=0):
  rng = np.random.default_rng(seed)
  images = jnp.asarray(rng.normal(size=(m,) + shape).astype(np.float32))
  labels = jnp.asarray(rng.integers(0, 3, m).astype(np.int32))
  params, batch_stats = random_variables(model, images[:1], seed)
  return params, {'image': images, 'label': labels}, batch_stats


def _covered(loss, params, examples, batch_stats) -> set[str]:
  """Parameter paths whose norms come from taps (not the fallback)."""
  first = jax.tree.map(lambda x: x[0], examples)
  found = layer_norms.find_layers(loss, params, first, batch_stats)
  paths = coherence.leaf_paths(params)
  assert all(paths[i] == f'{p}/{n}' for p, names in found.items()
             for n, i in names)
  return {paths[i] for names in found.values() for _, i in names}


def _explicit(loss, params, examples, batch_stats):
  """Per-leaf sums of squared per-example norms, per-example norms, and the
  squared norm of the summed gradient per leaf, one example at a time."""
  grad = jax.jit(jax.grad(loss))
  per_example = []
  for i in range(examples['label'].shape[0]):
    example = jax.tree.map(lambda x: x[i], examples)
    per_example.append([np.asarray(g, np.float64) for g in
                        jax.tree.leaves(grad(params, example, batch_stats))])
  sq = np.array([[np.sum(g ** 2) for g in leaves] for leaves in per_example])
  total = [sum(leaves[j] for leaves in per_example)
           for j in range(len(per_example[0]))]
  return {'denominators': sq.sum(0), 'sq_norm': sq.sum(1),
          'numerators': np.array([np.sum(t ** 2) for t in total])}


def _fast(loss, params, examples, batch_stats, microbatch_size=None):
  return coherence.coherence_stats(
      loss, params, examples, extra=(batch_stats,), statistics='norms',
      fast=True, microbatch_size=microbatch_size)


def _assert_match(got, expect, rtol=1e-4):
  assert np.all(np.isfinite(expect['sq_norm'])) and np.all(
      expect['sq_norm'] > 0), expect['sq_norm']
  for k in ('denominators', 'sq_norm', 'numerators'):
    np.testing.assert_allclose(np.asarray(got[k], np.float64), expect[k],
                               rtol=rtol, atol=1e-9, err_msg=k)


class ConvNet(nn.Module):
  """Conv (+ BatchNorm) -> Dense on positions -> Dense head."""
  conv: dict
  batch_norm: dict | None = None
  position_dense: bool = True

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(4, name='conv', **self.conv)(x)
    if self.batch_norm is not None:
      x = nn.BatchNorm(name='bn', **self.batch_norm)(
          x, use_running_average=not train)
    x = nn.relu(x)
    if self.position_dense:  # one weight, applied at every position
      x = nn.relu(nn.Dense(5, name='positions')(x))
    return nn.Dense(3, name='head')(x.reshape(x.shape[0], -1))


CONVS = {
    'same_stride2': {'kernel_size': (3, 3), 'strides': 2, 'padding': 'SAME'},
    'valid_dilated': {'kernel_size': (3, 3), 'padding': 'VALID',
                      'kernel_dilation': 2},
    'explicit_pads_no_bias': {'kernel_size': (2, 3), 'strides': (1, 2),
                              'padding': ((1, 2), (0, 1)), 'use_bias': False},
    'int_padding_1x1': {'kernel_size': (1, 1), 'padding': 1},
    # 2 input channels, 4 outputs: depthwise with multiplier 2 (EfficientNet's
    # depthwise convs have multiplier 1), and 2 groups of 1 -> 2.
    'depthwise_x2': {'kernel_size': (3, 3), 'padding': 'SAME',
                     'feature_group_count': 2},
}


@pytest.mark.parametrize('form', ['gram', 'explicit'])
@pytest.mark.parametrize('conv', sorted(CONVS))
def test_conv_and_position_dense_match_explicit_loop(conv, form, monkeypatch):
  monkeypatch.setattr(layer_norms, 'use_gram', lambda *_: form == 'gram')
  model = ConvNet(CONVS[conv])
  params, examples, stats = _setup(model, (7, 9, 2))
  loss = losses.make_per_example_loss(model)
  assert _covered(loss, params, examples, stats) == set(
      coherence.leaf_paths(params))
  _assert_match(_fast(loss, params, examples, stats),
                _explicit(loss, params, examples, stats))


@pytest.mark.parametrize('batch_norm', [{}, {'use_scale': False},
                                        {'use_bias': False, 'epsilon': 0.1}])
def test_eval_mode_batchnorm_matches_explicit_loop(batch_norm):
  model = ConvNet(CONVS['same_stride2'], batch_norm, position_dense=False)
  params, examples, stats = _setup(model, (6, 6, 3))
  loss = losses.make_per_example_loss(model)
  assert 'bn' in {p.split('/')[0] for p in
                  _covered(loss, params, examples, stats)}
  _assert_match(_fast(loss, params, examples, stats, microbatch_size=5),
                _explicit(loss, params, examples, stats))


class Uncovered(nn.Module):
  """Layers the taps leave to the fallback, next to one they cover."""

  @nn.compact
  def __call__(self, x, train=False):
    del train
    x = x.reshape(x.shape[0], -1)
    shared = nn.Dense(6, name='shared')  # called twice: norms don't add
    x = shared(jnp.tanh(shared(x)))
    x = x * self.param('scale', nn.initializers.ones, (6,))
    x = nn.DenseGeneral(4, name='general')(x)
    x = nn.BatchNorm(use_running_average=False, name='train_bn')(x)
    return nn.Dense(3, name='head')(x)


def test_uncovered_layers_fall_back_to_per_example_gradients():
  model = Uncovered()
  params, examples, stats = _setup(model, (6,))
  loss = lambda p, ex, s: losses.cross_entropy(
      model.apply({'params': p, 'batch_stats': s}, ex['image'][None],
                  mutable=['batch_stats'])[0][0], ex['label'])
  assert _covered(loss, params, examples, stats) == {'head/kernel',
                                                     'head/bias'}
  _assert_match(_fast(loss, params, examples, stats),
                _explicit(loss, params, examples, stats))


class _Lifted(nn.Module):
  """A covered layer (Dense) inside one of the constructs the taps cannot
  see through, then a plain Dense head (covered)."""
  family: str

  @nn.compact
  def __call__(self, x, train=False):
    del train
    x = x.reshape(x.shape[0], -1)
    if self.family.startswith('vmap'):
      shared = self.family == 'vmap_shared'
      layer = nn.vmap(nn.Dense, variable_axes={'params': None if shared
                                               else 0},
                      split_rngs={'params': not shared}, in_axes=1,
                      out_axes=1)(5)
      h = layer(jnp.stack([x, 2 * x + 1], 1)).reshape(x.shape[0], -1)
    elif self.family == 'weight_norm':
      h = nn.WeightNorm(nn.Dense(5))(x)
    elif self.family == 'spectral_norm':
      h = nn.SpectralNorm(nn.Dense(5))(x, update_stats=False)
    elif self.family == 'map_variables':
      doubled = nn.map_variables(
          nn.Dense, 'params', lambda t: jax.tree.map(lambda v: 2 * v, t),
          init=True)
      h = doubled(5, name='doubled')(x)
    elif self.family == 'tied':  # the kernel also read outside the call
      dense = nn.Dense(6, name='tied')
      h = jnp.tanh(dense(x)) @ dense.variables['params']['kernel'].T
    elif self.family == 'l2_in_forward':  # a parameter term in the output
      dense = nn.Dense(5, name='decayed')
      h = dense(x) + 0.1 * jnp.sum(dense.variables['params']['kernel'] ** 2)
    return nn.Dense(3, name='head')(jnp.tanh(h))


@pytest.mark.parametrize('family', ['vmap_shared', 'vmap_members',
                                    'weight_norm', 'spectral_norm',
                                    'map_variables', 'tied', 'l2_in_forward'])
def test_layers_the_taps_cannot_see_fall_back(family):
  """Before the checks in find_layers: vmap_shared, weight_norm,
  spectral_norm, map_variables (4x), tied and l2 gave wrong norms."""
  model = _Lifted(family)
  params, examples, stats = _setup(model, (6,))
  loss = lambda p, ex, s: losses.cross_entropy(
      model.apply({'params': p, 'batch_stats': s}, ex['image'][None])[0],
      ex['label'])  # (batch_stats: SpectralNorm's power iteration vector)
  assert _covered(loss, params, examples, stats) == {'head/kernel',
                                                     'head/bias'}
  _assert_match(_fast(loss, params, examples, stats),
                _explicit(loss, params, examples, stats))


# name: (module, kwargs, image shape, reference). The vmap(grad) path is the
# reference for the small models, the explicit loop (cheaper to compile) for
# the deep ones; the 8-device test compares with the vmap path for BatchNorm.
MODELS = {
    'mlp': ('mlp', {}, (28, 28, 1), 'vmap'),
    'cnn': ('cnn', {}, (28, 28, 1), 'vmap'),
    'resnet18_small_inputs': ('resnet', {'depth': 18, 'width': 8,
                                         'small_inputs': True}, (16, 16, 3),
                              'explicit'),
    'resnet50': ('resnet', {'depth': 50, 'width': 4}, (32, 32, 3),
                 'explicit'),
    'inception_v3': ('inception_v3', {}, (75, 75, 3), 'explicit'),
    'vgg13_bn': ('vgg', {'width': 4, 'hidden': 16}, (32, 32, 3), 'explicit'),
}


# The deep models (20-60 s each) in the full suite only.
@pytest.mark.parametrize('name', [
    pytest.param(n, marks=pytest.mark.slow) if MODELS[n][3] == 'explicit'
    else n for n in sorted(MODELS)])
def test_every_model_matches_per_example_gradients(name):
  module, kwargs, shape, reference = MODELS[name]
  model = models.get_model(module, 3, **kwargs)
  params, examples, stats = _setup(model, shape, m=4 if reference == 'vmap'
                                   else 2)
  loss = losses.make_per_example_loss(model)
  assert _covered(loss, params, examples, stats) == set(
      coherence.leaf_paths(params))
  if reference == 'vmap':
    fast = _fast(loss, params, examples, stats, microbatch_size=2)
    vmap = coherence.coherence_stats(loss, params, examples, extra=(stats,),
                                     statistics='norms', fast=False)
    expect = {k: np.asarray(v, np.float64) for k, v in vmap.items()}
  else:
    fast = _fast(loss, params, examples, stats)
    expect = _explicit(loss, params, examples, stats)
  _assert_match(fast, expect)
  summary = coherence.summarize(fast, coherence.leaf_paths(params),
                                models.layer_group_fn(module))
  assert 'gsnr' not in summary and 'avg_cosine' not in summary
  np.testing.assert_allclose(
      summary['m_coherence'],
      expect['numerators'].sum() / expect['denominators'].sum(), rtol=1e-4)


def test_every_efficientnet_layer_is_covered():
  """Its depthwise convs too (their norms: the 'depthwise_x2' conv case)."""
  model = models.get_model('efficientnet', 3)
  params, examples, stats = _setup(model, (32, 32, 3), m=1)
  loss = losses.make_per_example_loss(model)
  assert _covered(loss, params, examples, stats) == set(
      coherence.leaf_paths(params))


def test_unknown_statistics_is_named():
  with pytest.raises(ValueError, match="'cosines'"):
    coherence.coherence_stats(lambda p, ex: p * ex, 1.0, jnp.ones(2),
                              statistics='cosines')


@pytest.mark.slow  # 15-50 s: 8 devices or a deep model
def test_sharded_fast_path_equals_one_device_vmap_path():
  """Dense, Conv and BatchNorm taps on 8 devices vs the vmap path on one."""
  assert 'OK' in run_python(['-m', 'tests.sharded_checks', 'layer_taps'],
                            devices=8).stdout
