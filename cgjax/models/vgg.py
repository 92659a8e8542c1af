"""VGG with BatchNorm (Simonyan & Zisserman 2015), torchvision's layout.

`depth` 11, 13 (the Weak-and-Strong study's VGG-13-BN: 133,053,736
parameters at 1000 classes, as torchvision's vgg13_bn), 16 or 19. Each conv
is 3x3 (bias) + BatchNorm + ReLU; features are average-pooled to 7x7
(adaptively, so small inputs work) and classified by two 4096-wide dense
layers with dropout, as in the reference. Dropout needs the 'dropout' rng in
training (the train step gives one per step); it is off with train=False,
which is how per-example gradients are taken.
"""
import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cgjax.models import stage_group, to_float

LAYOUTS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3),
           19: (2, 2, 4, 4, 4)}
STAGE_WIDTHS = (1, 2, 4, 8, 8)  # x width
conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def adaptive_avg_pool(x, size: int):
  """torchvision's AdaptiveAvgPool2d: bin i spans [floor(i H / s), ceil((i +
  1) H / s)), so smaller maps are repeated and larger ones averaged."""
  def bins(n):
    return [(i * n // size, -(-(i + 1) * n // size)) for i in range(size)]
  rows = [jnp.mean(x[:, a:b], axis=1) for a, b in bins(x.shape[1])]
  x = jnp.stack(rows, axis=1)
  cols = [jnp.mean(x[:, :, a:b], axis=2) for a, b in bins(x.shape[2])]
  return jnp.stack(cols, axis=2)


def layer_group(path: str) -> str:
  """'block1'..'block5' (the conv stages) or the classifier layer."""
  return stage_group(path, ('block',))


class Model(nn.Module):
  num_classes: int
  depth: int = 13
  width: int = 64     # channels of the first stage (64 = standard), x2 per
  hidden: int = 4096  # stage up to 8 x width; classifier width
  dropout: float = 0.5
  normalize: str = 'unit'  # or 'imagenet' (see models.to_float)
  dtype: Any = 'float32'

  @nn.compact
  def __call__(self, images, train: bool = False):
    if self.depth not in LAYOUTS:
      raise ValueError(f'unknown vgg depth {self.depth}; choose from '
                       f'{sorted(LAYOUTS)}')
    dtype = jnp.dtype(self.dtype)
    x = to_float(images, self.normalize).astype(dtype)
    for i, (n, factor) in enumerate(zip(LAYOUTS[self.depth], STAGE_WIDTHS)):
      for j in range(n):
        x = nn.Conv(factor * self.width, (3, 3), padding=1, dtype=dtype,
                    kernel_init=conv_init, name=f'block{i + 1}_conv{j}')(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                         epsilon=1e-5, dtype=dtype,
                         name=f'block{i + 1}_bn{j}')(x)
        x = nn.relu(x)
      x = nn.max_pool(x, (2, 2), (2, 2))
    x = adaptive_avg_pool(x, 7).reshape(x.shape[0], -1)
    dense = functools.partial(nn.Dense, dtype=dtype,
                              kernel_init=nn.initializers.normal(0.01))
    for i in range(2):
      x = nn.relu(dense(self.hidden, name=f'fc{i}')(x))
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return dense(self.num_classes, name='head')(x).astype(jnp.float32)
