"""Fully connected ReLU network, the Coherent Gradients paper's MNIST model.

Default init follows the authors' reference code: weights N(0, 1) scaled by
2 / sqrt(fan_in + fan_out), zero biases (variance_scaling(2, 'fan_avg')).
"""
from typing import Sequence

import flax.linen as nn
import jax

from cgjax.models import to_float

INITS = {
    'cg_paper': jax.nn.initializers.variance_scaling(2.0, 'fan_avg', 'normal'),
    'lecun_normal': jax.nn.initializers.lecun_normal(),
    'he_normal': jax.nn.initializers.he_normal(),
}


class Model(nn.Module):
  num_classes: int
  widths: Sequence[int] = (256, 256, 256)
  init_scheme: str = 'cg_paper'

  @nn.compact
  def __call__(self, images, train: bool = False):
    del train  # no train-mode-only layers
    if self.init_scheme not in INITS:
      raise ValueError(f'unknown mlp init_scheme {self.init_scheme!r}; choose from {list(INITS)}')
    kernel_init = INITS[self.init_scheme]
    x = to_float(images).reshape(images.shape[0], -1)
    for i, width in enumerate(self.widths):
      x = nn.relu(nn.Dense(width, kernel_init=kernel_init, name=f'dense{i}')(x))
    return nn.Dense(self.num_classes, kernel_init=kernel_init, name='head')(x)
