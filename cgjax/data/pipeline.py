"""Batches from an in-memory `Split`, as pure functions of (seed, step).

A training batch depends only on (seed, step), so the data iterator's whole
state is the next step: a resumed run sees exactly the batches an
uninterrupted run would have seen. Each process takes its contiguous slice of
the global batch (process-local data for `make_array_from_process_local_data`).
"""
import collections
import concurrent.futures
from typing import Callable, Iterable, Iterator

import numpy as np

from cgjax.data import Split
from cgjax.data import noise as noise_lib


def batch_dict(split: Split, index: np.ndarray, seeds=None) -> dict:
  """The one batch layout used by training, evaluation and probes."""
  return {
      'image': split.read_images(index, seeds),
      'label': split.labels[index],
      'clean_label': split.clean_labels[index],
      'is_noisy': split.is_noisy[index],
      'example_id': index.astype(np.int32),
      'weight': np.ones(len(index), np.float32),
  }


def local_rows(global_size: int, process_index: int,
               process_count: int) -> slice:
  """This process's contiguous rows of a global batch: the process-local data
  that `make_array_from_process_local_data` puts together in process order."""
  if global_size % process_count:
    raise ValueError(f'a global batch of {global_size} is not divisible by '
                     f'the process count {process_count}')
  local = global_size // process_count
  return slice(process_index * local, (process_index + 1) * local)


class TrainLoader:
  """Epoch-wise reshuffled global batches; drops the last partial batch."""

  def __init__(self, split: Split, global_batch: int, seed: int,
               process_index: int = 0, process_count: int = 1):
    if global_batch > len(split):
      raise ValueError(f'batch_size={global_batch} is larger than the '
                       f'{len(split)} training examples')
    if global_batch % process_count:
      raise ValueError(f'batch_size={global_batch} is not divisible by the '
                       f'process count {process_count}')
    self.split, self.global_batch, self.seed = split, global_batch, seed
    self.steps_per_epoch = len(split) // global_batch
    self._local = local_rows(global_batch, process_index, process_count)
    self._epoch_order = (None, None)

  def global_indices(self, step: int) -> np.ndarray:
    epoch, pos = divmod(step, self.steps_per_epoch)
    # One tuple, replaced whole: the prefetch thread and measurements read
    # batches of different epochs concurrently.
    cached_epoch, order = self._epoch_order
    if epoch != cached_epoch:
      order = np.random.default_rng([self.seed, epoch]).permutation(
          len(self.split))
      self._epoch_order = (epoch, order)
    return order[pos * self.global_batch:(pos + 1) * self.global_batch]

  def batch(self, step: int) -> dict:
    """Process-local part of the global batch for update number step + 1.

    Random training crops (where the split makes them) are seeded by (seed,
    step, position in the global batch): the same for any process count.
    """
    index = self.global_indices(step)[self._local]
    seeds = [(self.seed, step, pos)
             for pos in range(self._local.start, self._local.stop)]
    return batch_dict(self.split, index, seeds)


def prefetch(make_batch: Callable[[int], dict], steps: Iterable[int],
             depth: int) -> Iterator[dict]:
  """Yields make_batch(step) for each step, computing up to `depth` ahead.

  One background thread reads, decodes and places (on device) the next
  batches while the accelerator runs the current step. Because a batch is a
  pure function of its step, prefetching never changes what a run sees, and
  the checkpointed data state stays just the next step. depth=0 reads inline.
  """
  if depth < 1:
    yield from map(make_batch, steps)
    return
  with concurrent.futures.ThreadPoolExecutor(1, 'cgjax-prefetch') as pool:
    pending = collections.deque()
    steps = iter(steps)
    try:
      for step in steps:
        pending.append(pool.submit(make_batch, step))
        if len(pending) > depth:
          yield pending.popleft().result()
      while pending:
        yield pending.popleft().result()
    finally:  # an error or an early stop: drop what was read ahead
      for future in pending:
        future.cancel()


def padded_batches(split: Split, batch_size: int, process_index: int = 0,
                   process_count: int = 1):
  """Whole-split batches for evaluation, padded with weight-0 examples."""
  n = len(split)
  local = local_rows(batch_size, process_index, process_count)
  for start in range(0, n, batch_size):
    index = np.arange(start, start + batch_size)[local]
    yield pad_batch(split, index[index < n], local.stop - local.start)


def pad_batch(split: Split, index: np.ndarray, size: int) -> dict:
  """Batch of `size` rows: `index`'s examples, then weight-0 copies of row 0."""
  pad = size - len(index)
  batch = batch_dict(split, np.concatenate([index, np.zeros(pad, int)]))
  batch['weight'][len(index):] = 0.0
  return batch


def fixed_sample(split: Split, candidates: np.ndarray, size: int,
                 seed: int) -> np.ndarray:
  """Indices of `size` of the `candidates` (bool [n]; size 0: all of them).

  The examples come in the order of a hash of (seed, example key), so a
  sample depends on the seed and on which examples are candidates, never on
  their positions or on anything else: the test sample is the same at every
  noise rate, and the clean sample of a higher rate is, as far as it goes,
  the clean sample of a lower one. The order is random, so microbatches of a
  sample are random subsets even where a split is sorted by class.
  """
  order = _hash_order(split.keys, seed)
  order = order[np.asarray(candidates)[order]]
  return order[:size] if size else order


_HASH_ORDERS = {}


def _hash_order(keys: np.ndarray, seed: int) -> np.ndarray:
  # Hashing 1.28M ImageNet keys takes seconds; every sample of a run shares
  # one order (so smaller samples are prefixes of larger ones).
  cached = _HASH_ORDERS.get((id(keys), seed))
  if cached is None or cached[0] is not keys:
    order = np.argsort(noise_lib.stable_hash(keys, seed, 'sample'),
                       kind='stable')
    cached = _HASH_ORDERS[(id(keys), seed)] = (keys, order)
  return cached[1]


def pools(dataset) -> dict:
  """(split, candidate mask) of each set a measurement can sample: 'train'
  (all training examples, clean and noisy mixed), 'clean', 'noisy', 'test',
  and the dataset's extra test sets (e.g. 'validation')."""
  train, test = dataset.train, dataset.test
  return {'train': (train, np.ones(len(train), bool)),
          'clean': (train, ~train.is_noisy),
          'noisy': (train, train.is_noisy),
          'test': (test, np.ones(len(test), bool)),
          **{name: (split, np.ones(len(split), bool))
             for name, split in dataset.extra_test.items()}}
