"""Data sets held in host memory, label noise applied, and their batching.

`load(config)` returns a `Dataset` whose train split carries both the clean
and the (possibly) noisy labels; every other part of cgjax reads this one
structure, so any metric can be split by `is_noisy`.
"""
import dataclasses
import logging
import os
from typing import Callable

import numpy as np

from cgjax.data import noise as noise_lib


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray        # uint8 [n, H, W, C], or imagenet.LazyImages
  labels: np.ndarray        # int32 [n], the labels used for training/eval
  clean_labels: np.ndarray  # int32 [n]
  is_noisy: np.ndarray      # bool [n]
  keys: np.ndarray          # [n] stable example identities (int or str)

  def __len__(self):
    return len(self.labels)

  def subset(self, index: np.ndarray) -> 'Split':
    fields = {f.name: getattr(self, f.name)[index]
              for f in dataclasses.fields(self) if f.name != 'images'}
    images = (self.images[index] if isinstance(self.images, np.ndarray)
              else self.images.view(index))  # lazy images stay lazy
    return Split(images=images, **fields)

  def read_images(self, index, seeds=None) -> np.ndarray:
    """uint8 images of `index`; `seeds` (one per row) ask for training crops."""
    if isinstance(self.images, np.ndarray):
      return self.images[index]
    return self.images.read(index, seeds)


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  train: Split
  test: Split
  num_classes: int
  noise: noise_lib.NoisyLabels


def clean_split(images, labels, keys) -> Split:
  labels = np.asarray(labels, np.int32)
  return Split(images=np.asarray(images, np.uint8), labels=labels,
               clean_labels=labels, is_noisy=np.zeros(len(labels), bool),
               keys=np.asarray(keys))


def write_npz_atomically(path, **arrays) -> bool:
  """Writes a cache file whole or not at all (local or gs:// paths).

  Concurrent writers race harmlessly; a read-only location is only logged
  (the caller recomputes next time). Returns whether the file was written.
  """
  from etils import epath  # pylint: disable=g-import-not-at-top
  path = epath.Path(path)
  tmp = path.parent / f'{path.name}.tmp{os.getpid()}'
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tmp.open('wb') as f:
      np.savez(f, **arrays)
    tmp.replace(path)
    return True
  except OSError as err:
    logging.warning('cannot write the cache %s: %s', path, err)
    return False


def _registry() -> dict[str, Callable]:
  from cgjax.data import embedded, imagenet, tfds_sets  # pylint: disable=g-import-not-at-top
  return {**embedded.LOADERS, **tfds_sets.LOADERS, **imagenet.LOADERS}


def names() -> list[str]:
  return sorted(_registry())


def check_name(name: str):
  if name not in _registry():
    raise ValueError(f'unknown dataset {name!r}; available: '
                     f'{", ".join(names())}')


# What `is_noisy` marks: 'changed', the examples whose training label differs
# from the original one (the Weak-and-Strong code's "corrupt"); 'selected',
# every example the noise process drew, including those whose uniformly drawn
# label happens to equal the original (1/K of them).
NOISY_MEANS = ('changed', 'selected')


def load(data_config, noise_config) -> Dataset:
  """Loads `data_config.name` and corrupts its train labels per noise_config.

  `Split.is_noisy` is what `noise_config.noisy_means` says; every probe,
  evaluation set and metric that splits clean from noisy reads it."""
  check_name(data_config.name)
  train, test, num_classes = _registry()[data_config.name](data_config)
  noisy = noise_lib.corrupt_labels(
      train.clean_labels, list(train.keys), num_classes=num_classes,
      rate=noise_config.rate, seed=noise_config.seed, kind=noise_config.kind,
      exclude_true_label=noise_config.exclude_true_label)
  if noise_config.noisy_means not in NOISY_MEANS:
    raise ValueError(f'noise.noisy_means must be one of {NOISY_MEANS}, got '
                     f'{noise_config.noisy_means!r}')
  is_noisy = (noisy.is_noisy if noise_config.noisy_means == 'selected'
              else noisy.labels != train.clean_labels)
  train = dataclasses.replace(train, labels=noisy.labels, is_noisy=is_noisy)
  return Dataset(name=data_config.name, train=train, test=test,
                 num_classes=num_classes, noise=noisy)
