"""AlexNet, torchvision's layout (61,100,840 parameters at 1000 classes).

The follow-up m-coherence study's extreme case: its random-label coherence
stays highest of the networks measured. Five convolutions (11x11 stride 4,
5x5, three 3x3; ReLU, 3x3 stride-2 max-pools after the 1st, 2nd and 5th),
features average-pooled to 6x6 (adaptively, so small inputs work, as
torchvision's AdaptiveAvgPool2d), then two `hidden`-wide dense layers each
after dropout, and the head. No BatchNorm, so every aggregator applies.
"""
import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cgjax.models import to_float
from cgjax.models.vgg import adaptive_avg_pool

# (channels, kernel, stride, padding, max-pool after)
CONVS = ((64, 11, 4, 2, True), (192, 5, 1, 2, True), (384, 3, 1, 1, False),
         (256, 3, 1, 1, False), (256, 3, 1, 1, True))
MIN_SIDE = 63


class Model(nn.Module):
  num_classes: int
  hidden: int = 4096
  dropout: float = 0.5
  normalize: str = 'unit'  # or 'imagenet' (see models.to_float)
  dtype: Any = 'float32'

  @nn.compact
  def __call__(self, images, train: bool = False):
    if min(images.shape[1:3]) < MIN_SIDE:  # the last max-pool would be empty
      raise ValueError(f'alexnet needs images of at least {MIN_SIDE} pixels '
                       f'a side, got {images.shape[1]}x{images.shape[2]}')
    dtype = jnp.dtype(self.dtype)
    x = to_float(images, self.normalize).astype(dtype)
    for i, (channels, kernel, stride, pad, pool) in enumerate(CONVS):
      x = nn.relu(nn.Conv(channels, (kernel, kernel), (stride, stride),
                          padding=((pad, pad), (pad, pad)), dtype=dtype,
                          name=f'conv{i}')(x))
      if pool:
        x = nn.max_pool(x, (3, 3), (2, 2))
    x = adaptive_avg_pool(x, 6).reshape(x.shape[0], -1)
    dense = functools.partial(nn.Dense, dtype=dtype)
    for i in range(2):
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
      x = nn.relu(dense(self.hidden, name=f'fc{i}')(x))
    return dense(self.num_classes, name='head')(x).astype(jnp.float32)
