"""Batches of decoded images read ahead in worker processes (Grain).

JPEG decoding and cropping hold the GIL for part of each image (PIL releases
it only inside its C loops), so the threads of one process stop scaling after
a few cores: `python -m benchmarks.imagenet_throughput` measures that
fraction and the rates. Grain's `mp_prefetch` spreads whole batches over
spawned processes, each with its own GIL, and hands them back in order.
What a batch holds stays a pure function of its element number (a `plan`:
element -> (rows, crop seeds)), so the worker count never changes a pixel,
and a run's iterator position is its next step (what the checkpoint stores:
Grain's own iterator state depends on the worker count, which may differ on
the host a run resumes on).
"""
import itertools
import os
import threading
import time
from typing import Callable, Iterator

import numpy as np

# A plan maps an element number to (rows of the split, one crop seed per row
# or None): picklable, since the workers run it.
Plan = Callable[[int], tuple[np.ndarray, list | None]]

# Decode threads in each worker process when `data.threads` is 0 (auto): the
# workers already fill the cores (see README, "ImageNet input").
THREADS_PER_WORKER = 1
# ... and in the training process when `data.workers` is 0: enough to overlap
# file reads with decoding, as cgjax always had.
THREADS_IN_PROCESS = 16
# Grain's `min_shm_size` that no array reaches.
_NEVER = 1 << 62


def host_cores() -> int:
  """Cores this process may run on (a container's or job's share)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # macOS
    return os.cpu_count() or 1


def resolve(workers: int, threads: int) -> tuple[int, int]:
  """(worker processes, decode threads per process) from the config fields
  `data.workers` (-1: one per core) and `data.threads` (0: automatic)."""
  if workers < -1:
    raise ValueError(f'data.workers must be -1 (one per core), 0 (decode in '
                     f'the training process) or more, got {workers}')
  if threads < 0:
    raise ValueError(f'data.threads must be 0 (automatic) or more, got '
                     f'{threads}')
  workers = host_cores() if workers == -1 else workers
  if not threads:
    threads = THREADS_PER_WORKER if workers else THREADS_IN_PROCESS
  return workers, threads


class _Read:
  """What each worker runs for an element: the plan's rows, decoded."""

  def __init__(self, images, plan: Plan):
    self.images, self.plan = images, plan

  def __call__(self, element: int) -> np.ndarray:
    return self.images.read(*self.plan(element))


def _exit_with_parent(unused_index: int, unused_count: int):
  """Grain's workers outlive a parent killed by SIGKILL (they wait to put
  into a queue nobody reads, holding memory and shared memory): each one
  polls its parent and exits once it is orphaned."""
  parent = os.getppid()

  def watch():
    while os.getppid() == parent:
      time.sleep(1)
    os._exit(1)  # pylint: disable=protected-access

  threading.Thread(target=watch, name='cgjax-parent-watch', daemon=True
                   ).start()


def _grain():
  import grain  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  # Grain reads its options from absl flags, which only an absl app parses
  # (cgjax-train does; tests, notebooks and benchmarks do not): without
  # this, its iterators raise UnparsedFlagAccessError (google/grain#1355).
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  return grain


def stream(images, plan: Plan, elements: range) -> Iterator[np.ndarray]:
  """uint8 images of plan(e) for each e in `elements`, in order.

  With `images.workers` >= 1 (a lazy reader without the attribute: 0)
  and more than one element, min(workers,
  elements) spawned processes decode whole batches ahead (one batch each in
  flight plus one waiting); otherwise they are decoded here, as each is
  asked for (a single batch gains nothing from processes that take ~2 s to
  start). Closing the generator stops the workers (in the background).
  """
  workers = min(getattr(images, 'workers', 0), len(elements))
  read = _Read(images, plan)
  if workers < 1 or len(elements) < 2:
    yield from map(read, elements)
    return
  grain = _grain()
  dataset = (grain.MapDataset.range(elements.start, elements.stop,
                                    elements.step)
             .map(read)
             # Reads in the workers only: threads there would decode several
             # batches at once in each and overcommit the cores.
             .to_iter_dataset(grain.ReadOptions(num_threads=0)))
  # Batches come back pickled through a pipe, not in shared memory: Grain
  # leaves shared-memory blocks of the last batches to the resource
  # tracker's warning at exit, and containers cap /dev/shm (Docker: 64 MB,
  # less than a few 224 px batches). Measured cost: the main process's CPU
  # time per image in benchmarks/imagenet_throughput.py.
  dataset = grain.experimental.WithOptionsIterDataset(
      dataset, grain.experimental.DatasetOptions(min_shm_size=_NEVER))
  dataset = dataset.mp_prefetch(
      grain.MultiprocessingOptions(num_workers=workers,
                                   per_worker_buffer_size=1),
      worker_init_fn=_exit_with_parent)
  iterator = iter(dataset)
  try:
    # Exactly len(elements): Grain notices the end of its workers' data only
    # after a 1 s queue timeout (measured: 0.95 s per pass).
    yield from itertools.islice(iterator, len(elements))
  finally:
    # Closing waits for each worker to finish its element and to see the
    # stop within 0.5 s (measured: ~1 s): the reader need not wait for it.
    threading.Thread(target=iterator.close, name='cgjax-decode-close').start()
