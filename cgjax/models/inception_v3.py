"""Inception-V3 (Szegedy et al. 2016) without the auxiliary head.

Layer layout and widths as in torchvision's inception_v3 (23.8M parameters
without the aux head, 1000 classes). Every conv is conv (no bias) + BatchNorm
(eps 1e-3) + ReLU. Dropout before the classifier, 0.5 as in torchvision
(`dropout=0` for none); it needs the 'dropout' rng in training and is off
with train=False (per-example gradients). Input 299x299 (75x75 is the
smallest that works). Mixed blocks are named `mixed_5b` ... `mixed_7c`.
"""
import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cgjax.models import to_float


class ConvBN(nn.Module):
  features: int
  kernel: tuple
  strides: int = 1
  padding: Any = 'VALID'
  train: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.features, self.kernel, self.strides, padding=self.padding,
                use_bias=False, dtype=self.dtype, name='conv')(x)
    x = nn.BatchNorm(use_running_average=not self.train, momentum=0.9,
                     epsilon=1e-3, dtype=self.dtype, name='bn')(x)
    return nn.relu(x)


def _avg_pool(x):
  return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)))


def _max_pool(x):
  return nn.max_pool(x, (3, 3), (2, 2))


class Mixed(nn.Module):
  """One Inception block; `kind` picks the torchvision layout A..E."""
  kind: str
  width: int = 0  # pool features (A) or 7x7 channels (C)
  train: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    cb = functools.partial(ConvBN, train=self.train, dtype=self.dtype)
    same = 'SAME'
    if self.kind == 'A':
      b5 = cb(64, (5, 5), padding=same)(cb(48, (1, 1))(x))
      b3 = cb(96, (3, 3), padding=same)(cb(96, (3, 3), padding=same)(
          cb(64, (1, 1))(x)))
      branches = [cb(64, (1, 1))(x), b5, b3,
                  cb(self.width, (1, 1))(_avg_pool(x))]
    elif self.kind == 'B':
      b3 = cb(96, (3, 3), 2)(cb(96, (3, 3), padding=same)(cb(64, (1, 1))(x)))
      branches = [cb(384, (3, 3), 2)(x), b3, _max_pool(x)]
    elif self.kind == 'C':
      c7 = self.width
      b7 = cb(192, (7, 1), padding=same)(cb(c7, (1, 7), padding=same)(
          cb(c7, (1, 1))(x)))
      d7 = cb(c7, (1, 1))(x)
      for features, kernel in ((c7, (7, 1)), (c7, (1, 7)), (c7, (7, 1)),
                               (192, (1, 7))):
        d7 = cb(features, kernel, padding=same)(d7)
      branches = [cb(192, (1, 1))(x), b7, d7, cb(192, (1, 1))(_avg_pool(x))]
    elif self.kind == 'D':
      b3 = cb(320, (3, 3), 2)(cb(192, (1, 1))(x))
      b7 = cb(192, (1, 1))(x)
      for kernel in ((1, 7), (7, 1)):
        b7 = cb(192, kernel, padding=same)(b7)
      branches = [b3, cb(192, (3, 3), 2)(b7), _max_pool(x)]
    else:  # 'E'
      b3 = cb(384, (1, 1))(x)
      d3 = cb(384, (3, 3), padding=same)(cb(448, (1, 1))(x))
      branches = [cb(320, (1, 1))(x),
                  cb(384, (1, 3), padding=same)(b3),
                  cb(384, (3, 1), padding=same)(b3),
                  cb(384, (1, 3), padding=same)(d3),
                  cb(384, (3, 1), padding=same)(d3),
                  cb(192, (1, 1))(_avg_pool(x))]
    return jnp.concatenate(branches, axis=-1)


BLOCKS = (('mixed_5b', 'A', 32), ('mixed_5c', 'A', 64), ('mixed_5d', 'A', 64),
          ('mixed_6a', 'B', 0), ('mixed_6b', 'C', 128), ('mixed_6c', 'C', 160),
          ('mixed_6d', 'C', 160), ('mixed_6e', 'C', 192), ('mixed_7a', 'D', 0),
          ('mixed_7b', 'E', 0), ('mixed_7c', 'E', 0))


def layer_group(path: str) -> str:
  """'stem' (the conv layers before the first block), each Mixed block, 'head'."""
  top = path.split('/')[0]
  return 'stem' if top.startswith('conv_') else top


class Model(nn.Module):
  num_classes: int
  dropout: float = 0.5
  dtype: str = 'float32'
  normalize: str = 'unit'  # or 'imagenet' (see models.to_float)

  @nn.compact
  def __call__(self, images, train: bool = False):
    dtype = jnp.dtype(self.dtype)
    cb = functools.partial(ConvBN, train=train, dtype=dtype)
    x = to_float(images, self.normalize).astype(dtype)
    x = cb(32, (3, 3), 2, name='conv_1a')(x)
    x = cb(32, (3, 3), name='conv_2a')(x)
    x = _max_pool(cb(64, (3, 3), padding='SAME', name='conv_2b')(x))
    x = cb(80, (1, 1), name='conv_3b')(x)
    x = _max_pool(cb(192, (3, 3), name='conv_4a')(x))
    for name, kind, width in BLOCKS:
      x = Mixed(kind, width, train, dtype, name=name)(x)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=dtype, name='head')(x).astype(
        jnp.float32)
