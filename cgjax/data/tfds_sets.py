"""TFDS image classification sets that fit in host memory (mnist,
fashion_mnist: the CG code's second data set, cifar10).

They are read from a prepared TFDS data dir (`data.data_dir`, default the TFDS
default) and never downloaded at run time. The stable example key is the
set's own `id` feature where it has one (cifar10), else the index in the split,
which TFDS keeps deterministic for `shuffle_files=False`.
"""
import numpy as np

from cgjax.data import clean_split, import_tfds

SETS = {'mnist': 10, 'fashion_mnist': 10, 'cifar10': 10}


def _not_prepared(name, data_dir, err):
  where = f' --data_dir={data_dir}' if data_dir else ''
  return FileNotFoundError(
      f'TFDS data set {name!r} is not prepared{" in " + data_dir if data_dir else ""}. '
      f'Prepare it once on a machine with internet access:\n'
      f'  tfds build {name}{where}\n(original error: {err})')


def _load_split(name, split, data_dir):
  tfds = import_tfds(f'data.name=tfds:{name}')
  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
    # Chunks, not batch_size=-1 (which aborts in TF 2.21 under mock_data).
    chunks = list(tfds.as_numpy(builder.as_dataset(
        split=split, shuffle_files=False).batch(10_000)))
    data = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
  except (tfds.core.registered.DatasetNotFoundError, AssertionError) as err:
    raise _not_prepared(name, data_dir, err) from err
  keys = (np.array([k.decode() for k in data['id']]) if 'id' in data
          else np.arange(len(data['label'])))
  return clean_split(data['image'], data['label'], keys)


def _loader(name):
  def load(config):
    data_dir = config.get('data_dir') or None
    return (_load_split(name, 'train', data_dir),
            _load_split(name, 'test', data_dir), SETS[name])
  return load


LOADERS = {f'tfds:{name}': _loader(name) for name in SETS}
