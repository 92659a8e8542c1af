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
  with pytest.raises(ValueError, match="unknown model 'resnet'.*cnn, mlp"):
    models.get_model('resnet', 10)
