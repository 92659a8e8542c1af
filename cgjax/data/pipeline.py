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
    local = global_batch // process_count
    self._local = range(process_index * local, (process_index + 1) * local)
    self._epoch, self._order = None, None

  def global_indices(self, step: int) -> np.ndarray:
    epoch, pos = divmod(step, self.steps_per_epoch)
    if epoch != self._epoch:
      self._epoch = epoch
      self._order = np.random.default_rng([self.seed, epoch]).permutation(
          len(self.split))
    return self._order[pos * self.global_batch:(pos + 1) * self.global_batch]

  def batch(self, step: int) -> dict:
    """Process-local part of the global batch for update number step + 1.

    Random training crops (where the split makes them) are seeded by (seed,
    step, position in the global batch): the same for any process count.
    """
    index = self.global_indices(step)[self._local.start:self._local.stop]
    seeds = [(self.seed, step, pos) for pos in self._local]
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
  local = batch_size // process_count
  for start in range(0, n, batch_size):
    index = np.arange(start, start + batch_size)
    index = index[process_index * local:(process_index + 1) * local]
    yield pad_batch(split, index[index < n], local)


def pad_batch(split: Split, index: np.ndarray, size: int) -> dict:
  """Batch of `size` rows: `index`'s examples, then weight-0 copies of row 0."""
  pad = size - len(index)
  batch = batch_dict(split, np.concatenate([index, np.zeros(pad, int)]))
  batch['weight'][len(index):] = 0.0
  return batch


PROBE_SETS = ('clean', 'noisy', 'test')


def select_probes(train: Split, test: Split, m: int, seed: int,
                  sets=PROBE_SETS) -> dict[str, np.ndarray]:
  """Fixed probe sets of m examples each: indices into train or test.

  Indices are in random order, so that microbatches (and the stiffness pairs
  inside them) are random subsets even where a split is ordered by class.

  A set with no candidate examples at all (clean at noise 1, noisy at noise
  0) is left out; one with fewer than m is an error.
  """
  candidates = {'clean': (train, ~train.is_noisy),
                'noisy': (train, train.is_noisy),
                'test': (test, np.ones(len(test), bool))}
  rng = np.random.default_rng([seed, 7])
  probes = {}
  for name in sets:
    if name not in candidates:
      raise ValueError(f'unknown probe set {name!r}; choose from {PROBE_SETS}')
    pool = np.flatnonzero(candidates[name][1])
    if not len(pool):
      continue
    if m > len(pool):
      raise ValueError(f'probe.m={m} is larger than the {len(pool)} available '
                       f'{name} examples; lower probe.m or the noise rate')
    probes[name] = rng.choice(pool, m, replace=False)
  return probes
