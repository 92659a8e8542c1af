"""How a batch's gradients become the update direction (`optim.aggregator`).

Coherent Gradients prescribes suppressing weak gradient directions, those
supported by few examples (Chatterjee 2020; Zielinski et al. 2020):

  mean       plain SGD: the gradient of the batch-mean loss.
  winsorize  per coordinate, each example's gradient value is clipped into
             [(c+1)-th smallest, (c+1)-th largest] of the batch's values, then
             averaged (`optim.winsorize_c` = c; c = 0 is the mean). Needs
             per-example gradients, and so models without BatchNorm.
  m3         median of means: the batch is split into k groups
             (`optim.m3_groups`; example i goes to group i mod k, k must
             divide the batch), each group's mean gradient is taken at the
             same weights, and the update is their coordinate-wise median.
  rm3        running median: coordinate-wise median of this step's gradient
             and the previous two steps' (a ring buffer, filled with the first
             gradient at step 0); no extra gradient work. `optim.rm3_warmup`
             'skip' (the authors' code): the first two steps update nothing;
             'repeat': the buffer's copies of the first gradient stand in.
  ra3        the control for rm3: the mean of the same three gradients.
  sign_sum   the CG code's policy of that name: SIGN_SCALE x the sign of each
             coordinate of the mean gradient (a step of lr x 0.001 per
             coordinate, whatever the gradient's size).
  sum_sign   the CG code's `sum_sign`: SIGN_SCALE x the sum over the batch
             of each example's gradient sign, a vote of the examples per
             coordinate (not divided by the batch size, as theirs). Needs
             per-example gradients, and so models without BatchNorm.

m3 and the authors' M3: their optimizer buffers the gradients of three
consecutive minibatches and updates along the median only at every third
step, so the three are taken at the same weights; here one batch of k x B
examples has k strided groups of B (group g: rows g, g + k, ...), their mean
gradients at the same weights, one update a step. The two are the same
update when group g holds the examples of the authors' g-th minibatch
(tests/test_aggregators.py runs both on the same minibatches), and the same
in distribution under shuffling: consecutive minibatches of a shuffled epoch
and strided groups of a shuffled batch are both disjoint uniform draws.
(The released M3 and RA3 compare the counter with `self.RINGBUFFER_SIZE`,
an attribute they never set; the rule followed is the evident one, RM3's
`ringbuffer_size` = 3.) With BatchNorm, each group normalizes with its own
statistics, as each of the authors' minibatches does, and the running
averages take the mean of the groups' updates (theirs: three updates in a
row).

winsorize runs data-parallel with exact global order statistics: each device
takes the c+1 largest and smallest values per coordinate of its own examples,
these candidates are gathered from all devices (the global (c+1)-th largest is
among them), and only clipped sums are reduced. Each leaf's per-example
gradients are reduced as soon as the backward pass produces them, and XLA
frees them before the next leaf's: compiled temporary memory is about 2x
batch x largest leaf, below batch x params (`benchmarks/aggregator_cost.py`
prints both; an explicit leaf-by-leaf recomputation measured worse).
Weight decay, where configured, is added after winsorize / m3 (it is the same
for every example and group, so clipping and medians commute with it) and
before rm3 / ra3, as in the authors' code.
"""
import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import optax

# Columns per tile of the tournament: a tile's [batch, TILE] block and its
# merges stay in cache.
TILE = 1024
# The CG code's constant factor of its sign policies (policy_sign_sum,
# policy_sum_sign in iclr_2020_paper/utils.py).
SIGN_SCALE = 0.001
# The tournament's merges cost O(k^2) small ops per level: above this k the
# row scan is faster (benchmarks/aggregator_cost.py times both).
TOURNAMENT_MAX_K = 3


def _merge_top(x: jax.Array, y: jax.Array, k: int) -> jax.Array:
  """Two descending lists [L, ...] -> the min(2L, k) largest of their union.

  The j-th largest (0-based) is max over i of min(x[i-1], y[j-i]), where an
  index of -1 stands for +inf (no element of that list above it).
  """
  length = x.shape[0]
  out = []
  for j in range(min(2 * length, k)):
    candidates = []
    for i in range(j + 2):
      xi, yi = i - 1, j - i
      if xi >= length or yi >= length:
        continue
      if xi < 0:
        candidates.append(y[yi])
      elif yi < 0:
        candidates.append(x[xi])
      else:
        candidates.append(jnp.minimum(x[xi], y[yi]))
    out.append(functools.reduce(jnp.maximum, candidates))
  return jnp.stack(out)


def _top(rows: jax.Array, k: int) -> jax.Array:
  """The k largest of each column of rows [n, cols], descending: [k, cols]
  (-inf where n < k), by a tournament of list merges over halves."""
  n = rows.shape[0]
  size = 1 << max(n - 1, 0).bit_length()
  lists = jnp.concatenate([rows, jnp.full((size - n,) + rows.shape[1:],
                                          -jnp.inf, rows.dtype)])[None]
  while lists.shape[1] > 1:
    half = lists.shape[1] // 2
    lists = _merge_top(lists[:, :half], lists[:, half:], k)
  lists = lists[:, 0]
  return jnp.concatenate([lists, jnp.full((k - lists.shape[0],)
                                          + lists.shape[1:], -jnp.inf,
                                          rows.dtype)])


def _extremes(rows: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """Per column, the k largest values (descending) and the k largest of the
  negated values: ([k, cols], [k, cols]).

  For k <= TOURNAMENT_MAX_K, tiles of TILE columns, each a tournament
  (log2(n) levels of elementwise list merges: vectorized and in cache; a
  784 x 256 layer at batch 100 and k = 2 in 25 ms where the scan takes 89).
  Else a scan over the rows that merges each row into two sorted lists with
  4k elementwise max/min (lax.top_k over the batch axis of per-example
  gradients, or an unrolled network that XLA fuses, are both 3-20x slower
  on XLA:CPU).
  """
  if k > TOURNAMENT_MAX_K:
    return _scan_extremes(rows, k)
  n, cols = rows.shape
  width = min(TILE, cols)
  tiles = -(-cols // width)
  padded = jnp.pad(rows, ((0, 0), (0, tiles * width - cols)))

  def tile(i):
    block = jax.lax.dynamic_slice_in_dim(padded, i * width, width, 1)
    return _top(block, k), _top(-block, k)

  top, bottom = jax.lax.map(tile, jnp.arange(tiles))  # [tiles, k, width]
  unfold = lambda x: x.swapaxes(0, 1).reshape(k, -1)[:, :cols]
  return unfold(top), unfold(bottom)


def _scan_extremes(rows: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """`_extremes` by one scan over the rows, each merged into the columns'
  two sorted lists with 4k elementwise max/min."""
  def insert(lists, row):
    out = []
    for top, x in zip(lists, (row, -row)):
      merged = []
      for j in range(k):
        merged.append(jnp.maximum(top[j], x))
        x = jnp.minimum(top[j], x)
      out.append(jnp.stack(merged))
    return tuple(out), None

  empty = jnp.full((k,) + rows.shape[1:], -jnp.inf, rows.dtype)
  return jax.lax.scan(insert, (empty, empty), rows)[0]


def _sharded_winsorized_sum(per_example: jax.Array, c: int, axis: str):
  """Inside shard_map: global-batch clipped sum from local examples.

  clip(g, lo, hi) = g - (g - hi)+ + (lo - g)+, and the local values beyond
  the global thresholds are all among the local c+1 extremes (at most c
  values of the global batch lie strictly beyond them), so one sum over the
  examples plus corrections from the candidate lists give the clipped sum.
  """
  # Materialized once: fused into the consumers below, XLA would recompute
  # the per-example gradients in each of them.
  flat = jax.lax.optimization_barrier(
      per_example.reshape(per_example.shape[0], -1))  # [local, coords]
  k = min(c + 1, flat.shape[0])
  top, bottom = _extremes(flat, k)
  hi = _extremes(jax.lax.all_gather(top, axis, tiled=True), c + 1)[0][c]
  neg_lo = _extremes(jax.lax.all_gather(bottom, axis, tiled=True),
                     c + 1)[0][c]
  # A matrix-vector product sums over the batch axis far faster than a
  # column reduction on XLA:CPU.
  total = (jnp.ones(flat.shape[0], flat.dtype) @ flat
           - jnp.sum(jnp.maximum(top - hi, 0), 0)
           + jnp.sum(jnp.maximum(bottom - neg_lo, 0), 0))
  return jax.lax.psum(total, axis).reshape(per_example.shape[1:])


def median_of_three(a, b, c):
  """Coordinate-wise median of three arrays: sum - min - max."""
  return a + b + c - jnp.minimum(jnp.minimum(a, b), c) - jnp.maximum(
      jnp.maximum(a, b), c)


def _ring_of_three(combine, skip: bool) -> optax.GradientTransformation:
  """Replaces the update by combine(last three updates), ring-buffered;
  zero for the first two updates where `skip`."""

  def init(params):
    zeros = jax.tree.map(jnp.zeros_like, params)
    return {'buffer': (zeros, zeros, zeros), 'count': jnp.zeros([], jnp.int32)}

  def update(updates, state, params=None):
    del params
    first = state['count'] == 0
    slot = state['count'] % 3
    buffer = tuple(
        jax.tree.map(lambda old, new, i=i: jnp.where(first | (slot == i), new,
                                                     old), b, updates)
        for i, b in enumerate(state['buffer']))
    ready = jnp.logical_or(not skip, state['count'] >= 2)
    out = jax.tree.map(lambda *b: jnp.where(ready, combine(*b), 0), *buffer)
    return out, {'buffer': buffer, 'count': state['count'] + 1}

  return optax.GradientTransformation(init, update)


WARMUPS = ('skip', 'repeat')


def rm3(warmup: str = 'skip') -> optax.GradientTransformation:
  return _ring_of_three(median_of_three, warmup == 'skip')


def ra3(warmup: str = 'skip') -> optax.GradientTransformation:
  return _ring_of_three(lambda a, b, c: (a + b + c) / 3, warmup == 'skip')


def _check_ring(cfg, batch_size):
  del batch_size
  warmup = cfg.get('rm3_warmup', 'skip')
  if warmup not in WARMUPS:
    raise ValueError(f'optim.rm3_warmup must be one of {WARMUPS}, got '
                     f'{warmup!r}')


def _m3(loss_fn, k, params, batch):
  # Column-major split (as optax.microbatching): group g = rows g, g+k, ...,
  # which keeps each group spread over the devices of a sharded batch.
  groups = jax.tree.map(
      lambda x: x.reshape((x.shape[0] // k, k) + x.shape[1:]).swapaxes(0, 1),
      batch)
  # Each group passes its index, which the loss folds into its dropout key:
  # the authors' three forward passes draw three independent masks.
  (losses, aux), grads = jax.vmap(
      jax.value_and_grad(loss_fn, has_aux=True), in_axes=(None, 0, 0))(
          params, groups, jnp.arange(k))
  median = jax.tree.map(lambda g: jnp.median(g, axis=0), grads)
  aux = jax.tree.map(lambda a: jnp.mean(a, 0), aux)
  return jnp.mean(losses), median, aux


def _per_example(per_example_loss_fn, mesh, combine, params, batch):
  """(mean loss, combined gradient, None) from the batch's per-example
  gradients, each device taking its own examples': `combine(g, total)` maps
  one leaf's [examples of this device, ...] gradients and the global
  example count to the global result (it reduces across 'data' itself)."""
  spec = jax.sharding.PartitionSpec('data')
  replicated = jax.sharding.PartitionSpec()

  def local(p, examples):
    losses, grads = jax.vmap(jax.value_and_grad(per_example_loss_fn),
                             in_axes=(None, 0))(p, examples)
    total = jax.lax.psum(jnp.float32(losses.shape[0]), 'data')
    return (jax.lax.psum(jnp.sum(losses), 'data') / total,
            jax.tree.map(lambda g: combine(g, total), grads))

  # check_vma=False: per-example gradients w.r.t. replicated params must not
  # be summed over devices implicitly (see coherence.sharded_coherence_stats).
  loss, grads = jax.shard_map(local, mesh=mesh, in_specs=(replicated, spec),
                              out_specs=replicated, check_vma=False)(
                                  params, batch)
  return loss, grads, None


def _winsorize(per_example_loss_fn, c, mesh, params, batch):
  return _per_example(
      per_example_loss_fn, mesh,
      lambda g, total: _sharded_winsorized_sum(g, c, 'data') / total,
      params, batch)


def _sign_of_sum(loss_fn, params, batch):
  (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params,
                                                                batch)
  return loss, jax.tree.map(lambda g: SIGN_SCALE * jnp.sign(g), grads), aux


def _sum_of_signs(per_example_loss_fn, mesh, params, batch):
  return _per_example(
      per_example_loss_fn, mesh,
      lambda g, _: SIGN_SCALE * jax.lax.psum(jnp.sum(jnp.sign(g), 0), 'data'),
      params, batch)


def _plain(cfg, loss_fn, per_example_loss_fn, mesh):
  del cfg, per_example_loss_fn, mesh

  def gradient(params, batch):
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params,
                                                                  batch)
    return loss, grads, aux
  return gradient


def _check_winsorize(cfg, batch_size):
  c = cfg.winsorize_c
  if c < 0:
    raise ValueError(f'optim.winsorize_c must be >= 0, got {c}')
  if batch_size is not None and 2 * (c + 1) > batch_size:
    raise ValueError(f'optim.winsorize_c={c} must leave two order '
                     f'statistics in a batch of {batch_size}: at most '
                     f'{batch_size // 2 - 1}')


def _check_m3(cfg, batch_size):
  k = cfg.m3_groups
  if k < 1 or (batch_size is not None and batch_size % k):
    raise ValueError(f'optim.m3_groups={k} must be >= 1 and divide the '
                     f'batch size {batch_size}')


@dataclasses.dataclass(frozen=True)
class Aggregator:
  """One `optim.aggregator`: the step's gradient, (cfg, loss_fn,
  per_example_loss_fn, mesh) -> gradient_fn; an optax stage run before the
  optimizer, or None; a check of its fields, (cfg, batch_size or None),
  raising ValueError; and whether it needs per-example gradients (no
  BatchNorm)."""
  gradient: Callable
  stage: Callable[..., optax.GradientTransformation] | None = None
  check: Callable = lambda cfg, batch_size: None
  per_example: bool = False


# The one place a name is dispatched: check, step and optimizer read it here.
AGGREGATORS = {
    'mean': Aggregator(_plain),
    'winsorize': Aggregator(
        lambda cfg, _, per_example_loss_fn, mesh: functools.partial(
            _winsorize, per_example_loss_fn, cfg.winsorize_c, mesh),
        check=_check_winsorize, per_example=True),
    'm3': Aggregator(lambda cfg, loss_fn, *_: functools.partial(
        _m3, loss_fn, cfg.m3_groups), check=_check_m3),
    'sign_sum': Aggregator(lambda cfg, loss_fn, *_: functools.partial(
        _sign_of_sum, loss_fn)),
    'sum_sign': Aggregator(
        lambda cfg, _, per_example_loss_fn, mesh: functools.partial(
            _sum_of_signs, per_example_loss_fn, mesh), per_example=True),
    'rm3': Aggregator(_plain, stage=rm3, check=_check_ring),
    'ra3': Aggregator(_plain, stage=ra3, check=_check_ring),
}


def get(cfg) -> Aggregator:
  """The Aggregator `cfg.aggregator` names; ValueError naming it if none."""
  name = cfg.get('aggregator', 'mean')
  if name not in AGGREGATORS:
    raise ValueError(f'unknown optim.aggregator {name!r}; choose from '
                     f'{tuple(AGGREGATORS)}')
  return AGGREGATORS[name]


def check(cfg, batch_size: int | None = None):
  """Raises ValueError naming a bad `optim.aggregator` setting."""
  get(cfg).check(cfg, batch_size)


def transformation(cfg) -> optax.GradientTransformation | None:
  """The aggregator's optax stage (rm3 / ra3), None for those in the step."""
  stage = get(cfg).stage
  return stage(cfg.get('rm3_warmup', 'skip')) if stage else None


def make_gradient_fn(cfg, loss_fn, per_example_loss_fn, mesh):
  """(params, batch) -> (mean loss, aggregated grads, aux) for the step.

  loss_fn(params, batch, group=None) -> (mean loss, aux) is the ordinary
  batch loss (`group`: m3's group index, folded into the dropout key);
  per_example_loss_fn(params, example) -> scalar is one example's loss.
  """
  return get(cfg).gradient(cfg, loss_fn, per_example_loss_fn, mesh)
