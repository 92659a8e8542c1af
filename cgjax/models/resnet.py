"""ResNet v1.5 (He et al. 2016; stride on the 3x3 conv of bottleneck blocks).

`depth` in {18, 34, 50, 101, 152}. BatchNorm uses batch statistics in
training and running averages otherwise (train=False), which is also how
per-example gradients are defined for probes (losses.make_per_example_loss). Convs use He-normal
(fan_out) init; `zero_init_residual` zero-initializes the last BN scale of
each block (Goyal et al. 2017). `dtype` is the compute dtype; params stay
float32. `small_inputs` swaps the ImageNet stem for a 3x3 stride-1 conv without
max-pool, for 32x32 images; `width` scales every stage (64 is standard). Modules are named `stage{i}_block{j}` so layer
groups can be read off parameter paths.
"""
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cgjax.models import stage_group, to_float

STAGES = {18: ('basic', (2, 2, 2, 2)), 34: ('basic', (3, 4, 6, 3)),
          50: ('bottleneck', (3, 4, 6, 3)), 101: ('bottleneck', (3, 4, 23, 3)),
          152: ('bottleneck', (3, 8, 36, 3))}
conv_init = jax.nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def layer_group(path: str) -> str:
  """'stem', 'stage1'..'stage4' or 'head' (per-group coherence metrics)."""
  return stage_group(path, ('stem', 'stage'))


class Block(nn.Module):
  width: int
  stride: int
  bottleneck: bool
  zero_init_residual: bool
  dtype: Any

  @nn.compact
  def __call__(self, x, train):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype,
                             kernel_init=conv_init)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=0.9, epsilon=1e-5, dtype=self.dtype)
    last_scale = (nn.initializers.zeros if self.zero_init_residual
                  else nn.initializers.ones)
    if self.bottleneck:
      out_width = 4 * self.width
      y = nn.relu(norm(name='bn1')(conv(self.width, (1, 1), name='conv1')(x)))
      y = conv(self.width, (3, 3), self.stride, padding=1, name='conv2')(y)
      y = nn.relu(norm(name='bn2')(y))
      y = conv(out_width, (1, 1), name='conv3')(y)
      y = norm(scale_init=last_scale, name='bn3')(y)
    else:
      out_width = self.width
      y = conv(self.width, (3, 3), self.stride, padding=1, name='conv1')(x)
      y = nn.relu(norm(name='bn1')(y))
      y = conv(self.width, (3, 3), padding=1, name='conv2')(y)
      y = norm(scale_init=last_scale, name='bn2')(y)
    if x.shape[-1] != out_width or self.stride != 1:
      x = conv(out_width, (1, 1), self.stride, name='proj_conv')(x)
      x = norm(name='proj_bn')(x)
    return nn.relu(x + y)


class Model(nn.Module):
  num_classes: int
  depth: int = 50
  zero_init_residual: bool = False
  small_inputs: bool = False
  width: int = 64  # channels of the stem and first stage (64 = standard)
  dtype: str = 'float32'
  normalize: str = 'unit'  # or 'imagenet' (see models.to_float)

  @nn.compact
  def __call__(self, images, train: bool = False):
    if self.depth not in STAGES:
      raise ValueError(f'unknown resnet depth {self.depth}; choose from '
                       f'{sorted(STAGES)}')
    dtype = jnp.dtype(self.dtype)
    kind, blocks = STAGES[self.depth]
    x = to_float(images, self.normalize).astype(dtype)
    if self.small_inputs:
      x = nn.Conv(self.width, (3, 3), use_bias=False, dtype=dtype,
                  kernel_init=conv_init, name='stem_conv')(x)
    else:
      x = nn.Conv(self.width, (7, 7), 2, padding=3, use_bias=False, dtype=dtype,
                  kernel_init=conv_init, name='stem_conv')(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=dtype, name='stem_bn')(x))
    if not self.small_inputs:
      x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    for i, n in enumerate(blocks):
      for j in range(n):
        x = Block(self.width * 2 ** i, 2 if i and not j else 1, kind == 'bottleneck',
                  self.zero_init_residual, dtype,
                  name=f'stage{i + 1}_block{j}')(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=dtype, name='head')(x).astype(
        jnp.float32)
