"""Data sets held in host memory, label noise applied, and their batching.

`load(config)` returns a `Dataset` whose train split carries both the clean
and the (possibly) noisy labels; every other part of cgjax reads this one
structure, so any metric can be split by `is_noisy`.
"""
import dataclasses
import io
import logging
from typing import Callable

import numpy as np

from cgjax import storage

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
  # Further test sets evaluated next to `test`, by name: the data set's own
  # test split ('validation') when `test` is held out of a key subset.
  extra_test: dict[str, Split] = dataclasses.field(default_factory=dict)


def clean_split(images, labels, keys) -> Split:
  labels = np.asarray(labels, np.int32)
  return Split(images=np.asarray(images, np.uint8), labels=labels,
               clean_labels=labels, is_noisy=np.zeros(len(labels), bool),
               keys=np.asarray(keys))


def npz_bytes(**arrays) -> bytes:
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  return buffer.getvalue()


def write_npz_atomically(path, **arrays) -> bool:
  """Writes a cache file whole or not at all (any path of cgjax.storage).

  Concurrent writers race harmlessly; a read-only location is only logged
  (the caller recomputes next time). Returns whether the file was written.
  """
  try:
    storage.makedirs(storage.dirname(path))
    storage.write_atomic(path, npz_bytes(**arrays))
    return True
  except OSError as err:
    logging.warning('cannot write the cache %s: %s', path, err)
    return False


def import_tfds(purpose: str):
  """tensorflow_datasets, an optional dependency (the `tfds` extra: prepared
  TFDS sets and ImageNet); a one-line error naming `purpose` and the install
  command where it is missing."""
  try:
    import tensorflow_datasets  # pylint: disable=g-import-not-at-top
  except ImportError as err:
    raise ValueError(
        f'{purpose} needs TensorFlow Datasets, which is not installed '
        f"({err.name}): pip install 'cgjax[tfds]' (in a clone: pip install "
        '-r requirements-tfds.txt)') from None
  return tensorflow_datasets


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


def read_keys(path: str, field: str) -> np.ndarray:
  """Example keys from a JSON file: a list, or an object with a 'keys' list
  (as the learning-times measurement writes)."""
  import json  # pylint: disable=g-import-not-at-top
  try:
    content = json.loads(storage.read_text(path))
  except (OSError, ValueError) as err:
    raise ValueError(f'{field}={path!r}: cannot read a JSON key list '
                     f'({type(err).__name__}: {err})') from None
  keys = content.get('keys') if isinstance(content, dict) else content
  if not isinstance(keys, list):
    raise ValueError(f'{field}={path!r}: expected a JSON list of keys or an '
                     "object with a 'keys' list")
  return np.asarray(keys)


def select(train: Split, test: Split, data_config):
  """(train, test, extra test sets) after `data.include_keys`,
  `exclude_keys`, `heldout_size` and `train_size`.

  The held-out test split and the training subset come in the order of a
  hash of the example key (independent of the run seed and of positions), so
  every run restricted to one key list holds out the same examples; the data
  set's own test split is then evaluated as 'validation'.
  """
  keep = np.ones(len(train), bool)
  for field, include in (('include_keys', True), ('exclude_keys', False)):
    path = data_config.get(field, '')
    if not path:
      continue
    listed = read_keys(path, f'data.{field}')
    found = np.isin(train.keys, listed)
    if not found.any():
      raise ValueError(f'data.{field}={path!r}: none of its {len(listed)} '
                       f'keys is a training example key of '
                       f'{data_config.name} (e.g. {train.keys[0]!r})')
    keep &= found if include else ~found
  heldout = data_config.get('heldout_size', 0)  # >= 0: train.validate
  size = data_config.get('train_size', 0)
  if not heldout and not size:
    return (train, test, {}) if keep.all() else (train.subset(keep), test, {})
  index = np.flatnonzero(keep)
  if heldout + size > len(index):
    raise ValueError(f'data.heldout_size={heldout} + data.train_size={size} '
                     f'> the {len(index)} selected training examples')
  # Hashing 1.28M ImageNet keys takes seconds: only where a part is chosen.
  index = index[np.argsort(noise_lib.stable_hash(train.keys[index], 0,
                                                 'heldout'), kind='stable')]
  train_index = index[heldout:heldout + size] if size else index[heldout:]
  if not heldout:
    return train.subset(np.sort(train_index)), test, {}
  return (train.subset(np.sort(train_index)),
          train.subset(np.sort(index[:heldout])), {'validation': test})


def load(data_config, noise_config) -> Dataset:
  """Loads `data_config.name`, restricts it (`select`) and corrupts its train
  labels per noise_config.

  `Split.is_noisy` is what `noise_config.noisy_means` says; every probe,
  evaluation set and metric that splits clean from noisy reads it."""
  check_name(data_config.name)
  train, test, num_classes = _registry()[data_config.name](data_config)
  train, test, extra_test = select(train, test, data_config)
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
                 num_classes=num_classes, noise=noisy, extra_test=extra_test)
