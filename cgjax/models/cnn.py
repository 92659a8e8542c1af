"""A small conv net (two conv+pool stages, one hidden dense layer)."""
from typing import Sequence

import flax.linen as nn

from cgjax.models import to_float


class Model(nn.Module):
  num_classes: int
  channels: Sequence[int] = (32, 64)
  hidden: int = 128

  @nn.compact
  def __call__(self, images, train: bool = False):
    del train  # no train-mode-only layers
    x = to_float(images)
    for i, c in enumerate(self.channels):
      x = nn.relu(nn.Conv(c, (3, 3), name=f'conv{i}')(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(self.hidden, name='dense')(x))
    return nn.Dense(self.num_classes, name='head')(x)
