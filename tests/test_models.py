"""Models: shapes, parameter counts and the CG paper's initialization."""
import jax
import numpy as np
import pytest

from cgjax import models


def test_mlp_param_count_and_init():
  model = models.get_model('mlp', 10, widths=(256, 256, 256))
  params = model.init(jax.random.key(0), np.zeros((1, 28, 28, 1), np.uint8))
  params = params['params']
  count = sum(x.size for x in jax.tree.leaves(params))
  assert count == 784 * 256 + 256 + 2 * (256 * 256 + 256) + 256 * 10 + 10
  for layer, (fan_in, fan_out) in {'dense0': (784, 256),
                                   'dense1': (256, 256)}.items():
    kernel = np.asarray(params[layer]['kernel'])
    # Reference code: N(0, 1) * 2 / sqrt(fan_in + fan_out), zero biases.
    np.testing.assert_allclose(kernel.std(), 2 / np.sqrt(fan_in + fan_out),
                               rtol=0.03)
    assert abs(kernel.mean()) < 0.01
    assert not np.asarray(params[layer]['bias']).any()


def test_cnn_output_shape():
  model = models.get_model('cnn', 7)
  x = np.zeros((3, 28, 28, 1), np.uint8)
  variables = model.init(jax.random.key(0), x)
  assert model.apply(variables, x).shape == (3, 7)


def test_unknown_model_lists_choices():
  with pytest.raises(ValueError, match="unknown model 'densenet'.*alexnet, "
                     "cnn, efficientnet, inception_v3, mlp, resnet, vgg"):
    models.get_model('densenet', 10)


def _num_params(name, resolution, **kwargs):
  model = models.get_model(name, 1000, **kwargs)
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.key(0), np.zeros((1, resolution, resolution, 3), np.uint8)))
  return sum(x.size for x in jax.tree.leaves(shapes['params']))


# Published counts (torchvision; Inception-V3 is 27,161,264 with the aux head,
# whose 3,326,696 parameters are not built here).
@pytest.mark.parametrize('name,kwargs,resolution,published', [
    ('resnet', {'depth': 18}, 224, 11_689_512),
    ('resnet', {'depth': 50}, 224, 25_557_032),
    ('resnet', {'depth': 101}, 224, 44_549_160),
    ('inception_v3', {}, 299, 27_161_264 - 3_326_696),
    ('vgg', {'depth': 13}, 224, 133_053_736),  # torchvision vgg13_bn
    ('efficientnet', {}, 224, 5_288_548),  # torchvision efficientnet_b0
    ('alexnet', {}, 224, 61_100_840),  # torchvision alexnet
])
def test_published_parameter_counts(name, kwargs, resolution, published):
  assert _num_params(name, resolution, **kwargs) == published


@pytest.mark.slow  # 20-45 s: a deep model
@pytest.mark.parametrize('name,kwargs,resolution', [
    ('resnet', {'depth': 50, 'zero_init_residual': True}, 64),
])
def test_one_train_step_runs_and_updates_batch_stats(name, kwargs, resolution):
  import optax  # pylint: disable=g-import-not-at-top
  from cgjax import train  # pylint: disable=g-import-not-at-top
  model = models.get_model(name, 10, **kwargs)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (4, resolution, resolution, 3), np.uint8)
  variables = model.init(jax.random.key(0), images[:1])
  state = train.TrainState.create(apply_fn=model.apply,
                                  params=variables['params'],
                                  batch_stats=variables['batch_stats'],
                                  tx=optax.sgd(0.1))
  batch = {'image': images, 'label': np.arange(4) % 10,
           'weight': np.ones(4, np.float32)}
  from cgjax import parallel  # pylint: disable=g-import-not-at-top
  from configs import common  # pylint: disable=g-import-not-at-top
  step = train.make_train_step(model, common.base_config().optim,
                               parallel.make_mesh())
  new, metrics = jax.jit(step)(state, batch)
  assert np.isfinite(metrics['loss'])
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), state.batch_stats,
                         new.batch_stats)
  assert all(jax.tree.leaves(changed))  # every BN layer saw the batch
  if kwargs.get('zero_init_residual'):
    assert not np.any(variables['params']['stage1_block0']['bn3']['scale'])


@pytest.mark.slow  # 15-50 s: 8 devices or a deep model
def test_resnet_bf16_compute_keeps_float32_params():
  model = models.get_model('resnet', 10, depth=18, small_inputs=True,
                           dtype='bfloat16')
  x = np.zeros((2, 8, 8, 3), np.uint8)
  variables = model.init(jax.random.key(0), x)
  assert {p.dtype for p in jax.tree.leaves(variables['params'])} == {
      np.dtype('float32')}
  assert model.apply(variables, x).dtype == np.float32


@pytest.mark.slow  # 20-45 s: a deep model
@pytest.mark.parametrize('name,kwargs', [
    ('vgg', {'width': 4, 'hidden': 16}),
])
def test_dropout_draws_per_step_in_training_only(name, kwargs):
  """Dropout / stochastic depth: off in eval mode (per-example gradients),
  drawn from the given key in training, where BatchNorm statistics update."""
  model = models.get_model(name, 10, **kwargs)
  x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), np.uint8)
  variables = jax.jit(model.init)(jax.random.key(0), x[:1])
  evaluate = jax.jit(model.apply)
  np.testing.assert_array_equal(evaluate(variables, x), evaluate(variables, x))
  train = jax.jit(lambda key: model.apply(
      variables, x, train=True, mutable=['batch_stats'], rngs={'dropout': key}))
  (one, stats), (again, _) = train(jax.random.key(1)), train(jax.random.key(1))
  np.testing.assert_array_equal(one, again)
  assert np.abs(one - train(jax.random.key(2))[0]).max() > 1e-4
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)),
                         variables['batch_stats'], stats['batch_stats'])
  assert all(jax.tree.leaves(changed))  # every BN layer saw the batch
  with pytest.raises(Exception, match='dropout'):
    model.apply(variables, x, train=True, mutable=['batch_stats'])


def test_imagenet_normalization():
  """'imagenet' standardizes uint8 pixels with torchvision's mean and std."""
  x = np.array([[[[0, 128, 255]]]], np.uint8)
  got = np.asarray(models.to_float(x, 'imagenet'))[0, 0, 0]
  want = (np.array([0, 128, 255]) / 255 - [0.485, 0.456, 0.406]) / [
      0.229, 0.224, 0.225]
  np.testing.assert_allclose(got, want, rtol=1e-6)
  with pytest.raises(ValueError, match="normalize='caffe'"):
    models.to_float(x, 'caffe')


@pytest.mark.parametrize('name,size', [('inception_v3', 75),
                                       ('efficientnet', 32)])
def test_training_mode_draws_dropout(name, size):
  """Their train mode needs the 'dropout' rng (traced only, not compiled)."""
  model = models.get_model(name, 10)
  x = np.zeros((2, size, size, 3), np.uint8)
  variables = jax.eval_shape(model.init, jax.random.key(0), x[:1])
  train = lambda **rngs: jax.eval_shape(lambda v: model.apply(
      v, x, train=True, mutable=['batch_stats'], **rngs), variables)
  assert train(rngs={'dropout': jax.random.key(1)})[0].shape == (2, 10)
  with pytest.raises(Exception, match='dropout'):
    train()


def test_stochastic_depth_drops_whole_residual_branches_per_example():
  """EfficientNet's MBConv: in training each example's branch is kept with
  probability 1 - rate and rescaled, or dropped (output = its input)."""
  from cgjax.models import efficientnet  # pylint: disable=g-import-not-at-top
  block = efficientnet.MBConv(6, 3, 1, 8, drop_rate=0.5, train=True)
  x = np.random.default_rng(0).normal(size=(64, 4, 4, 8)).astype(np.float32)
  variables = block.init({'params': jax.random.key(0),
                          'dropout': jax.random.key(1)}, x)
  y, _ = block.apply(variables, x, rngs={'dropout': jax.random.key(2)},
                     mutable=['batch_stats'])
  dropped = np.all(np.isclose(np.asarray(y), x), axis=(1, 2, 3))
  assert 16 < dropped.sum() < 48  # about half of 64 (binomial, p = 0.5)
  kept, _ = efficientnet.MBConv(6, 3, 1, 8, drop_rate=0.0, train=True).apply(
      variables, x, mutable=['batch_stats'])
  # Kept branches are the undropped branch scaled by 1 / (1 - rate).
  np.testing.assert_allclose(np.asarray(y)[~dropped] - x[~dropped],
                             2 * (np.asarray(kept) - x)[~dropped], rtol=1e-4,
                             atol=1e-5)


def test_alexnet_names_images_too_small_for_its_pools():
  model = models.get_model('alexnet', 10, hidden=8)
  assert model.init(jax.random.key(0), np.zeros((1, 63, 63, 3), np.uint8))
  with pytest.raises(ValueError, match='alexnet needs images of at least 63 '
                     'pixels a side, got 62x62'):
    model.init(jax.random.key(0), np.zeros((1, 62, 62, 3), np.uint8))
