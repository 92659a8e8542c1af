"""EfficientNet-B0 (Tan & Le 2019), torchvision's layout (5,288,548
parameters at 1000 classes).

MBConv blocks: 1x1 expansion, depthwise kxk, squeeze-and-excitation (to a
quarter of the block's input channels), 1x1 projection; SiLU; BatchNorm after
every conv. Regularization as in the reference: dropout 0.2 before the
classifier and stochastic depth on the residual branches, its drop rate
rising linearly from 0 to 0.2 over the 16 blocks (a whole example's branch is
dropped, "row" mode). Both need the 'dropout' rng in training and are off with
train=False (per-example gradients). Every layer, the depthwise (feature
group) convs included, is covered by the per-layer fast path of
cgjax.layer_norms.
"""
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cgjax.models import stage_group, to_float

# (expansion, kernel, stride, output channels, blocks) per stage, B0.
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2),
          (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4),
          (6, 3, 1, 320, 1))
STEM, HEAD = 32, 1280
conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def layer_group(path: str) -> str:
  """'stem', 'stage1'..'stage7', 'top' (the last 1x1 conv) or 'head'."""
  return stage_group(path, ('stage',))


class ConvBN(nn.Module):
  features: int
  kernel: int = 1
  strides: int = 1
  groups: int = 1
  act: bool = True
  train: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.features, (self.kernel, self.kernel), self.strides,
                padding=(self.kernel - 1) // 2, feature_group_count=self.groups,
                use_bias=False, dtype=self.dtype, kernel_init=conv_init,
                name='conv')(x)
    x = nn.BatchNorm(use_running_average=not self.train, momentum=0.9,
                     epsilon=1e-5, dtype=self.dtype, name='bn')(x)
    return nn.silu(x) if self.act else x


class MBConv(nn.Module):
  expansion: int
  kernel: int
  strides: int
  features: int
  drop_rate: float
  train: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    cb = functools.partial(ConvBN, train=self.train, dtype=self.dtype)
    channels = x.shape[-1]
    expanded = channels * self.expansion
    y = cb(expanded, name='expand')(x) if self.expansion != 1 else x
    y = cb(expanded, self.kernel, self.strides, groups=expanded,
           name='depthwise')(y)
    s = jnp.mean(y, axis=(1, 2), keepdims=True)
    s = nn.silu(nn.Conv(max(1, channels // 4), (1, 1), dtype=self.dtype,
                        name='se_reduce')(s))
    s = nn.sigmoid(nn.Conv(expanded, (1, 1), dtype=self.dtype,
                           name='se_expand')(s))
    y = cb(self.features, act=False, name='project')(y * s)
    if self.strides != 1 or channels != self.features:
      return y
    if self.train and self.drop_rate > 0:
      keep = 1.0 - self.drop_rate
      mask = jax.random.bernoulli(self.make_rng('dropout'), keep,
                                  (y.shape[0], 1, 1, 1))
      y = jnp.where(mask, y / keep, 0)
    return x + y


class Model(nn.Module):
  num_classes: int
  dropout: float = 0.2
  stochastic_depth: float = 0.2
  normalize: str = 'unit'  # or 'imagenet' (see models.to_float)
  dtype: Any = 'float32'

  @nn.compact
  def __call__(self, images, train: bool = False):
    dtype = jnp.dtype(self.dtype)
    cb = functools.partial(ConvBN, train=train, dtype=dtype)
    x = to_float(images, self.normalize).astype(dtype)
    x = cb(STEM, 3, 2, name='stem')(x)
    total = sum(stage[-1] for stage in STAGES)
    index = 0
    for i, (expansion, kernel, strides, features, blocks) in enumerate(STAGES):
      for j in range(blocks):
        x = MBConv(expansion, kernel, strides if j == 0 else 1, features,
                   self.stochastic_depth * index / total, train, dtype,
                   name=f'stage{i + 1}_block{j}')(x)
        index += 1
    x = cb(HEAD, name='top')(x)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=dtype, name='head')(x).astype(
        jnp.float32)
