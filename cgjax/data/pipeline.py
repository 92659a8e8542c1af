"""Batches of a `Split`, as pure functions of (seed, step).

A training batch depends only on (seed, step), so the data iterator's whole
state is the next step: a resumed run sees exactly the batches an
uninterrupted run would have seen. Each process takes its contiguous slice of
the global batch (process-local data for `make_array_from_process_local_data`).
"""
import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from cgjax.data import Split
from cgjax.data import noise as noise_lib
from cgjax.data import workers


def batch_dict(split: Split, index: np.ndarray, seeds=None,
               images=None) -> dict:
  """The one batch layout used by training, evaluation and probes (`images`:
  the rows of `index` already read, e.g. by worker processes)."""
  return {
      'image': split.read_images(index, seeds) if images is None else images,
      'label': split.labels[index],
      'clean_label': split.clean_labels[index],
      'is_noisy': split.is_noisy[index],
      'example_id': index.astype(np.int32),
      'weight': np.ones(len(index), np.float32),
  }


def stream(split: Split, plan: workers.Plan, elements: range,
           finish: Callable[[int, dict], dict] = lambda e, batch: batch
           ) -> Iterator[dict]:
  """batch_dict of plan(e) for each e in `elements`, in order; a split of
  decoded images reads them ahead in worker processes (cgjax/data/workers.py).
  `finish(e, batch)` completes each batch (e.g. zero weights of padding)."""
  if isinstance(split.images, np.ndarray):  # in memory: sliced here
    for element in elements:
      yield finish(element, batch_dict(split, plan(element)[0]))
    return
  images = workers.stream(split.images, plan, elements)
  with contextlib.closing(images):
    for element, read in zip(elements, images):
      yield finish(element, batch_dict(split, plan(element)[0], images=read))


def local_rows(global_size: int, process_index: int,
               process_count: int) -> slice:
  """This process's contiguous rows of a global batch: the process-local data
  that `make_array_from_process_local_data` puts together in process order."""
  if global_size % process_count:
    raise ValueError(f'a global batch of {global_size} is not divisible by '
                     f'the process count {process_count}')
  local = global_size // process_count
  return slice(process_index * local, (process_index + 1) * local)


@functools.lru_cache(maxsize=4)
def _permutation(size: int, seed: int, epoch: int) -> np.ndarray:
  # Cached: the prefetched batches and measurements read up to two epochs
  # at once; the whole order is recomputed once per epoch (1.28M: ~30 ms).
  return np.random.default_rng([seed, epoch]).permutation(size)


@dataclasses.dataclass(frozen=True)
class TrainOrder:
  """Which examples and crop seeds make up each training batch: a plan
  (`order(step) -> (this process's rows, seeds)`) small enough to pickle
  into worker processes."""
  size: int
  global_batch: int
  seed: int
  local: slice

  @property
  def steps_per_epoch(self) -> int:
    return self.size // self.global_batch

  def global_indices(self, step: int) -> np.ndarray:
    epoch, pos = divmod(step, self.steps_per_epoch)
    order = _permutation(self.size, self.seed, epoch)
    return order[pos * self.global_batch:(pos + 1) * self.global_batch]

  def __call__(self, step: int) -> tuple[np.ndarray, list]:
    """Random training crops (where the split makes them) are seeded by
    (seed, step, position in the global batch): the same for any process
    count."""
    seeds = [(self.seed, step, pos)
             for pos in range(self.local.start, self.local.stop)]
    return self.global_indices(step)[self.local], seeds


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
    self.order = TrainOrder(len(split), global_batch, seed, local_rows(
        global_batch, process_index, process_count))
    self.steps_per_epoch = self.order.steps_per_epoch

  def global_indices(self, step: int) -> np.ndarray:
    return self.order.global_indices(step)

  def batch(self, step: int) -> dict:
    """Process-local part of the global batch for update number step + 1,
    read here and now."""
    return batch_dict(self.split, *self.order(step))

  def batches(self, start: int, stop: int) -> Iterator[dict]:
    """`batch(step)` for step in [start, stop), read ahead (in worker
    processes where the split decodes images)."""
    return stream(self.split, self.order, range(start, stop))


def prefetch(place: Callable[[dict], Any], batches: Iterable[dict],
             depth: int) -> Iterator[Any]:
  """Yields place(batch) for each batch, computing up to `depth` ahead.

  One background thread takes the next batches and places them (on device)
  while the accelerator runs the current step. Because a batch is a pure
  function of its step, prefetching never changes what a run sees, and the
  checkpointed data state stays just the next step. depth=0 reads inline.
  """
  batches = iter(batches)
  try:
    if depth < 1:
      yield from map(place, batches)
      return
    done = object()

    def take():
      batch = next(batches, done)
      return done if batch is done else place(batch)

    with concurrent.futures.ThreadPoolExecutor(1, 'cgjax-prefetch') as pool:
      pending = collections.deque(pool.submit(take) for _ in range(depth))
      try:
        while (item := pending.popleft().result()) is not done:
          pending.append(pool.submit(take))
          yield item
      finally:  # an error or an early stop: drop what was read ahead
        for future in pending:
          future.cancel()
  finally:  # stops the worker processes reading ahead (after the thread)
    if hasattr(batches, 'close'):
      batches.close()


@dataclasses.dataclass(frozen=True)
class PaddedOrder:
  """The plan of `padded_batches`: batch b holds split rows b * batch_size
  onwards (this process's share), then copies of row 0 up to its size."""
  size: int
  batch_size: int
  local: slice

  def __len__(self):
    return -(-self.size // self.batch_size)

  def real(self, batch: int) -> np.ndarray:
    index = np.arange(batch * self.batch_size,
                      (batch + 1) * self.batch_size)[self.local]
    return index[index < self.size]

  def __call__(self, batch: int) -> tuple[np.ndarray, None]:
    return _padded(self.real(batch), self.local.stop - self.local.start), None


def _padded(index: np.ndarray, size: int) -> np.ndarray:
  return np.concatenate([index, np.zeros(size - len(index), index.dtype)])


def padded_batches(split: Split, batch_size: int, process_index: int = 0,
                   process_count: int = 1) -> Iterator[dict]:
  """Whole-split batches for evaluation, padded with weight-0 examples, read
  ahead like training batches."""
  order = PaddedOrder(len(split), batch_size,
                      local_rows(batch_size, process_index, process_count))

  def zero_padding(b, batch):
    batch['weight'][len(order.real(b)):] = 0.0
    return batch

  return stream(split, order, range(len(order)), zero_padding)


def pad_batch(split: Split, index: np.ndarray, size: int) -> dict:
  """Batch of `size` rows: `index`'s examples, then weight-0 copies of row 0."""
  batch = batch_dict(split, _padded(index, size))
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
