"""Per-example gradient statistics, in one streaming pass over the examples.

For m examples with per-example loss gradients g_1..g_m (unit weights;
weight-0 rows are padding and count for nothing):

  m-coherence  ||sum_i g_i||^2 / sum_i ||g_i||^2  (m if all equal, 1 if
               pairwise orthogonal); alpha = m-coherence / m
  rho          (m-coherence - 1) / (m - 1), the m-invariant part: with mean
               gradient mu, E||sum g_i||^2 = m E||g||^2 + m (m - 1) ||mu||^2,
               so m-coherence ~ 1 + (m - 1) rho, rho = ||mu||^2 / E||g||^2
               (1 for identical examples, 0 for orthogonal ones), and
               alpha = rho + (1 - rho) / m keeps a 1/m floor. rho_low /
               rho_high: a CONFIDENCE t-interval from the disjoint
               sub-samples a stream's chunks are (`rho_interval`; nan for
               one resident pass). m_coherence_at_M = 1 + (M - 1) rho reads
               a small probe on the scale of an M-example one
  gradient diversity (Yin et al. 2018)  sum_i ||g_i||^2 / ||sum_i g_i||^2
               = 1 / m-coherence
  avg cosine   mean over pairs i != j of cos(g_i, g_j)
               = (||sum_i u_i||^2 - m) / (m (m - 1)),  u_i = g_i / ||g_i||,
               exact and O(m) (examples with a zero gradient are left out)
  stiffness (Fort et al. 2019)  mean over pairs of sign(g_i . g_j) and of
               cos(g_i, g_j), separately for same-class and different-class
               pairs. Pairs are those inside consecutive blocks of each
               microbatch, ceil(b / STIFFNESS_BLOCK) blocks of equal size
               for a microbatch of b (the last one padded, so any m works;
               a copy of the gradients only then): an unbiased estimate of the
               all-pairs mean at O(m x block) cost, exact when one block
               holds all m examples.
  block gradient confusion  Sankararaman et al.'s (2019) gradient
               confusion, min over pairs i != j of g_i . g_j (negative: the
               most conflicting pair), over the same block pairs as
               stiffness only: an upper bound of the all-pairs minimum, hence
               the name (equal to it when one block holds all m examples);
               O(m x block), so only with statistics='all'
  GSNR (Liu et al. 2020)  per parameter, mean_i(g)^2 / var_i(g) (population
               variance over the m examples), averaged over the parameters
               whose per-example gradient is not constant. The variance is
               two-pass within a microbatch and merged across microbatches,
               devices and chunks with Chan et al.'s update (one-pass
               E[g^2] - E[g]^2 in float32 left every constant coordinate a
               variance of rounding error: GSNR 54,324 instead of 0.28 with
               an L2 term). Rule: a coordinate is constant when its standard
               deviation is at most CONSTANT_RTOL of its root mean square
               (float32 agreement; a GSNR above 1e10 is not measurable).
  quantiles    of the per-example loss and gradient norm

Per-layer values restrict each g_i to one parameter leaf and per-group values
to a named group of leaves (`group_of(path)`, e.g. a residual stage); a
total or group value is the ratio of summed numerators and denominators, not
an average of per-leaf ratios. Per-example gradients are materialized one
microbatch at a time (`optax.microbatching.microbatch` over `vmap(grad)`), so
memory is O(params x microbatch) for any m; sums across microbatches are
compensated (Neumaier) so float32 stays accurate for m in the thousands.

statistics='norms' computes only what needs the summed gradient and the
per-example squared norms: m-coherence, alpha and gradient diversity (total,
per layer, per group) and the loss / gradient-norm quantiles. With fast=True
(the default) it takes them from one ordinary batched backward pass with
per-layer taps (`cgjax.layer_norms`: Dense, Conv, eval-mode BatchNorm), at
about the cost of a training step and O(params + activations) memory; leaves
of any other layer get their per-example gradients from `vmap(grad)` w.r.t.
those leaves only. Both give the same numbers (tests/test_layer_norms.py).
"""
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.stats

from cgjax import layer_norms

PerExampleLoss = Callable[..., jax.Array]
QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
# Stiffness pairs come from consecutive blocks of at most this many examples
# of each microbatch.
STIFFNESS_BLOCK = 128
CONSTANT_RTOL = 1e-5
STATISTICS = ('all', 'norms')
CONFIDENCE = 0.95  # of rho's interval (rho_low, rho_high)


def leaf_paths(tree) -> list[str]:
  """'/'-joined key paths of a pytree's leaves, in tree_leaves order."""
  paths, _ = zip(*jax.tree_util.tree_flatten_with_path(tree)[0])
  return ['/'.join(str(getattr(k, 'key', getattr(k, 'idx', k))) for k in p)
          for p in paths]


def top_module(path: str) -> str:
  """Default layer group: the top-level module of a parameter path."""
  return path.split('/')[0]


def _compensated_sum() -> optax.microbatching.Accumulator:
  """Sum over microbatches with Neumaier compensation, leaf by leaf."""

  def update(carry, value, _):
    def one(sum_and_comp, v):
      s, c = sum_and_comp
      t = s + v
      c = c + jnp.where(jnp.abs(s) >= jnp.abs(v), (s - t) + v, (v - t) + s)
      return t, c
    return jax.tree.map(one, carry, value,
                        is_leaf=lambda x: isinstance(x, tuple))

  return optax.microbatching.Accumulator(
      init=lambda value: jax.tree.map(
          lambda v: (jnp.zeros(v.shape, v.dtype), jnp.zeros(v.shape, v.dtype)),
          value),
      update=update,
      finalize=lambda carry: jax.tree.map(
          lambda sc: sc[0] + sc[1], carry,
          is_leaf=lambda x: isinstance(x, tuple)),
      aggregate=lambda values: jax.tree.map(lambda v: jnp.sum(v, 0), values))


def _merge_moments(a, b):
  """Chan et al.'s merge of (count, mean, M2) of two disjoint sets."""
  n = a['n'] + b['n']
  frac = jnp.where(n > 0, b['n'] / jnp.where(n > 0, n, 1), 0)
  delta = jax.tree.map(lambda x, y: y - x, a['mean'], b['mean'])
  return {'n': n,
          'mean': jax.tree.map(lambda x, d: x + d * frac, a['mean'], delta),
          'm2': jax.tree.map(lambda x, y, d: x + y + d * d * a['n'] * frac,
                             a['m2'], b['m2'], delta)}


def _pooled_moments(n, mean, m2, total):
  """(count, mean, M2) of the union of sets with counts n, means `mean` and
  M2s `m2` (leading axis: the sets, or none inside shard_map), where
  total(x) sums x over the sets (an axis sum, or a psum over devices)."""
  weigh = lambda x: n.reshape(n.shape + (1,) * (x.ndim - n.ndim)) * x
  count = total(n)
  safe = jnp.where(count > 0, count, 1)
  pooled = jax.tree.map(lambda x: total(weigh(x)) / safe, mean)
  return {'n': count, 'mean': pooled, 'm2': jax.tree.map(
      lambda x, q, p: total(q + weigh(jnp.square(x - p))), mean, m2, pooled)}


def _minimum() -> optax.microbatching.Accumulator:
  """Minimum across microbatches (+inf before any pair)."""
  return optax.microbatching.Accumulator(
      init=lambda value: jnp.full(value.shape, jnp.inf, value.dtype),
      update=lambda carry, value, _: jnp.minimum(carry, value),
      finalize=lambda carry: carry,
      aggregate=lambda values: jnp.min(values, 0))


def _moments() -> optax.microbatching.Accumulator:
  """Per-coordinate count, mean and M2 across microbatches."""
  return optax.microbatching.Accumulator(
      init=lambda value: jax.tree.map(lambda v: jnp.zeros(v.shape, v.dtype),
                                      value),
      update=lambda carry, value, _: _merge_moments(carry, value),
      finalize=lambda carry: carry,
      aggregate=lambda values: _pooled_moments(
          values['n'], values['mean'], values['m2'],
          lambda x: jnp.sum(x, 0)))


def _microbatch_stats(per_example_loss, params, examples, weights, classes,
                      extra):
  """Sums of one microbatch, and its per-example losses and squared norms."""

  def loss(p, example, weight):
    return weight * per_example_loss(p, example, *extra)

  losses, grads = jax.vmap(jax.value_and_grad(loss), in_axes=(None, 0, 0))(
      params, examples, weights)
  grads = jax.tree.map(lambda g: g.astype(jnp.float32), grads)
  b = weights.shape[0]
  block = -(-b // -(-b // STIFFNESS_BLOCK))  # balanced, <= STIFFNESS_BLOCK
  padded = -(-b // block) * block  # zero rows: weight 0, norm 0, no pairs
  flat = [jnp.pad(g.reshape(b, -1), ((0, padded - b), (0, 0))).reshape(
      padded // block, block, -1) for g in jax.tree.leaves(grads)]
  # Per-leaf Gram matrices of blocks of the microbatch: their diagonals are
  # the per-example squared norms, their off-diagonals the stiffness pairs.
  # One 2-D product per block: XLA:CPU runs the batched einsum of 4 blocks
  # of 25 at 96 ms per [100, 200704] leaf, the full 100 x 100 Gram at 39.
  grams = [jnp.stack([x @ x.T for x in g]) for g in flat]
  sq_norms = jnp.stack([jnp.diagonal(x, 0, 1, 2).reshape(-1)[:b]
                        for x in grams], 1)  # [B, leaves]
  gram = sum(grams)
  norm = jnp.sqrt(jnp.sum(sq_norms, 1))
  inv_norm = jnp.where(norm > 0, 1 / jnp.where(norm > 0, norm, 1), 0)
  # Weighted sums over the microbatch as matrix-vector products (reducing a
  # [B, P] array over B directly is several times slower on XLA:CPU).
  weighted_sum = lambda w, fn: jax.tree.map(
      lambda g: (w @ fn(g.reshape(b, -1))).reshape(g.shape[1:]), grads)
  valid = (norm > 0).astype(jnp.float32)
  blocks = lambda v: jnp.pad(v, (0, padded - b)).reshape(-1, block)
  inv, w, c, ok = (blocks(v) for v in (inv_norm, weights, classes, valid))
  cos = gram * inv[:, :, None] * inv[:, None, :]
  pair = ((w * ok)[:, :, None] * (w * ok)[:, None, :]
          * (1 - jnp.eye(block)))
  same = (c[:, :, None] == c[:, None, :]).astype(jnp.float32) * pair
  diff = pair - same
  pairs = jnp.stack([jnp.stack([jnp.sum(x * jnp.sign(gram)),
                                jnp.sum(x * cos), jnp.sum(x)])
                     for x in (same, diff)])  # [same|diff, sign|cos|count]
  # Confusion counts zero gradients too (their products are 0): `pair`
  # without the nonzero mask.
  real_pair = w[:, :, None] * w[:, None, :] * (1 - jnp.eye(block))
  confusion = jnp.min(jnp.where(real_pair > 0, gram, jnp.inf))
  sum_g = weighted_sum(jnp.ones(b), lambda g: g)
  return {
      'sum_g': sum_g,
      'sum_u': weighted_sum(inv_norm, lambda g: g),
      'moments': _microbatch_moments(grads, weights, sum_g),
      'pairs': pairs,
      'confusion': confusion,
      'num_nonzero': jnp.sum(valid * weights),
      'loss': losses,
      'sq_norms': sq_norms,
  }


def _microbatch_moments(grads, weights, sum_g) -> dict:
  """(count, mean, M2) per coordinate of a microbatch's per-example
  gradients [B, ...] (weight-0 rows are zero and excluded), two-pass."""
  n = jnp.sum(weights)
  b = weights.shape[0]
  mean = jax.tree.map(lambda s: s / jnp.where(n > 0, n, 1), sum_g)
  m2 = jax.tree.map(
      lambda g, u: (weights @ jnp.square(g - u).reshape(b, -1)).reshape(
          g.shape[1:]), grads, mean)
  return {'n': n, 'mean': mean, 'm2': m2}


def _squared_norms(grads, b: int) -> jax.Array:
  """[B, leaves] squared norms of per-example gradients (leading axis B)."""
  return jnp.stack([jnp.sum(jnp.square(g.reshape(b, -1)), 1)
                    for g in jax.tree.leaves(grads)], 1)


def _microbatch_norms(per_example_loss, params, examples, weights, classes,
                      extra, fast):
  """Summed gradient, per-example losses and per-leaf squared norms."""
  del classes
  b = weights.shape[0]
  leaves, treedef = jax.tree.flatten(params)
  layers = {}
  if fast:
    first = jax.tree.map(lambda x: x[0], examples)
    layers = layer_norms.find_layers(per_example_loss, params, first, *extra)
  column = {i: (p, j) for p, names in layers.items()
            for j, (_, i) in enumerate(names)}
  probes = {p: jnp.zeros((b, len(names)), jnp.float32)
            for p, names in layers.items()}

  def total(params, probes):
    def one(example, weight, probe):
      return weight * layer_norms.tapped(
          lambda: per_example_loss(params, example, *extra), probe)
    losses = jax.vmap(one)(examples, weights, probes)
    return jnp.sum(losses), losses

  (_, losses), (sum_g, tapped) = jax.value_and_grad(
      total, (0, 1), has_aux=True)(params, probes)
  rest = [i for i in range(len(leaves)) if i not in column]
  if rest:  # per-example gradients of the uncovered leaves only

    def loss_of_rest(sub, example, weight):
      full = list(leaves)
      for i, v in zip(rest, sub):
        full[i] = v
      return weight * per_example_loss(jax.tree.unflatten(treedef, full),
                                       example, *extra)

    grads = jax.vmap(jax.grad(loss_of_rest), in_axes=(None, 0, 0))(
        [leaves[i] for i in rest], examples, weights)
    rest = dict(zip(rest, jnp.unstack(_squared_norms(grads, b), axis=1)))
  sq_norms = jnp.stack([tapped[column[i][0]][:, column[i][1]]
                        if i in column else rest[i]
                        for i in range(len(leaves))], 1)
  return {'sum_g': jax.tree.map(lambda g: g.astype(jnp.float32), sum_g),
          'loss': losses, 'sq_norms': sq_norms}


def _accumulate(per_example_loss, params, examples, weights, classes, extra,
                microbatch_size, statistics, fast):
  """The whole pass: compensated sums, concatenated per-example values."""
  kahan, concat = _compensated_sum(), optax.microbatching.AccumulationType.CONCAT
  accumulator = {'sum_g': kahan, 'loss': concat, 'sq_norms': concat}
  if statistics == 'all':
    fn = functools.partial(_microbatch_stats, per_example_loss, params,
                           extra=extra)
    accumulator.update(sum_u=kahan, moments=_moments(), pairs=kahan,
                       num_nonzero=kahan, confusion=_minimum())
  else:
    fn = functools.partial(_microbatch_norms, per_example_loss, params,
                           extra=extra, fast=fast)
  m = weights.shape[0]
  if microbatch_size is not None and (microbatch_size < 1
                                      or m % microbatch_size):
    divisors = [d for d in range(1, min(m, microbatch_size) + 1) if m % d == 0]
    raise ValueError(
        f'microbatch_size={microbatch_size} does not divide the {m} examples'
        f' (per device, if sharded): use a divisor such as {divisors[-1]}, or '
        'pad the examples with weight-0 rows (coherence_stats(weights=...))'
        if divisors else f'microbatch_size={microbatch_size} must be >= 1')
  if microbatch_size in (None, m):
    # One microbatch: no loop (XLA:CPU runs convolutions inside a while loop
    # several times slower).
    return fn(examples, weights, classes)
  return optax.microbatching.microbatch(
      lambda ex, w, c: fn(ex, w, c), argnums=(0, 1, 2),
      microbatch_size=microbatch_size,
      accumulator=accumulator)(examples, weights, classes)


_SUMMED = ('sum_g', 'sum_u', 'pairs', 'num_nonzero')
# Carried across chunks by their own rule: Chan's merge, a minimum.
_NOT_SUMMED = ('moments', 'confusion')


def _reduce(acc, weights) -> dict:
  """Accumulated sums -> the small arrays `summarize` needs (on device)."""
  m = jnp.sum(weights)
  sum_g = jax.tree.leaves(acc['sum_g'])
  out = {
      'numerators': jnp.stack([jnp.sum(s * s) for s in sum_g]),
      'denominators': jnp.sum(acc['sq_norms'] * weights[:, None], 0),
      'm': m,
      'loss': acc['loss'],
      'sq_norm': jnp.sum(acc['sq_norms'], 1),
      'weight': weights,
  }
  if 'moments' not in acc:  # statistics='norms'
    return out
  gsnr_sum, gsnr_count = [], []
  moments = acc['moments']
  for mean, m2 in zip(jax.tree.leaves(moments['mean']),
                      jax.tree.leaves(moments['m2'])):
    var = m2 / jnp.maximum(moments['n'], 1)
    ok = var > CONSTANT_RTOL**2 * (mean * mean + var)  # not constant
    gsnr_sum.append(jnp.sum(jnp.where(ok, mean * mean / jnp.where(ok, var, 1),
                                      0)))
    gsnr_count.append(jnp.sum(ok))
  return {
      **out,
      'gsnr_sum': jnp.stack(gsnr_sum),
      'gsnr_count': jnp.stack(gsnr_count).astype(jnp.float32),
      'sq_norm_of_unit_sum': sum(jnp.sum(u * u)
                                 for u in jax.tree.leaves(acc['sum_u'])),
      'num_nonzero': acc['num_nonzero'],
      'pairs': acc['pairs'],
      'confusion': acc['confusion'],
  }


def _check_statistics(statistics: str):
  if statistics not in STATISTICS:
    raise ValueError(f'unknown statistics {statistics!r}; choose from '
                     f'{STATISTICS}')


def _defaults(examples, weights, classes):
  n = jax.tree.leaves(examples)[0].shape[0]
  if weights is None:
    weights = jnp.ones((n,), jnp.float32)
  if classes is None:
    classes = jnp.zeros((n,), jnp.int32)
  return weights, classes


@functools.partial(jax.jit, static_argnames=('per_example_loss',
                                             'microbatch_size', 'statistics',
                                             'fast'))
def coherence_stats(per_example_loss: PerExampleLoss, params, examples,
                    weights=None, classes=None, extra=(), *,
                    microbatch_size=None, statistics='all',
                    fast=True) -> dict:
  """Jittable pass on one device; `summarize` turns its arrays into metrics.

  `weights` (default all ones) must be 0 or 1: weight-0 rows are padding and
  contribute nothing, which lets callers pad m to a multiple of the
  microbatch (and device) count. `classes` [m] (default: all one class) split
  the stiffness pairs. `extra` reaches `per_example_loss(params, example,
  *extra)` unchanged and undifferentiated (e.g. fixed BatchNorm statistics).
  `statistics` ('all' or 'norms') and `fast` (norms from per-layer taps) as
  in the module docstring. For examples sharded over a mesh use
  `sharded_coherence_stats`.
  """
  weights, classes = _defaults(examples, weights, classes)
  _check_statistics(statistics)
  acc = _accumulate(per_example_loss, params, examples, weights, classes,
                    extra, microbatch_size, statistics, fast)
  return _reduce(acc, weights)


def _sharded_pass(per_example_loss, mesh, params, examples, weights, classes,
                  extra, microbatch_size, statistics, fast) -> dict:
  """Sums over all devices' examples (psum) and the per-example values
  (gathered), not yet reduced: what one chunk of a stream contributes."""
  replicated = jax.sharding.PartitionSpec()
  data = jax.sharding.PartitionSpec('data')

  def local(p, ex, w, c, e):
    acc = _accumulate(per_example_loss, p, ex, w, c, e, microbatch_size,
                      statistics, fast)
    summed = jax.lax.psum({k: acc[k] for k in _SUMMED if k in acc}, 'data')
    if 'moments' in acc:
      summed['moments'] = _pooled_moments(
          **acc['moments'], total=lambda x: jax.lax.psum(x, 'data'))
      summed['confusion'] = jax.lax.pmin(acc['confusion'], 'data')
    # Per-example values (m of them) are gathered, so that every process
    # can read them (a data-sharded array spans other hosts' devices).
    gather = lambda x: jax.lax.all_gather(x, 'data', tiled=True)
    # ||sum g||^2 per leaf of this pass's examples alone: a stream's chunks
    # are the disjoint sub-samples of rho's interval.
    numerators = jnp.stack([jnp.sum(s * s)
                            for s in jax.tree.leaves(summed['sum_g'])])
    return {**summed, 'loss': gather(acc['loss']),
            'sq_norms': gather(acc['sq_norms']), 'weight': gather(w),
            'numerators': numerators}

  # check_vma=False: with it, the gradient w.r.t. the replicated params would
  # be summed over devices implicitly, and each "per-example" norm would be
  # that of the whole batch's gradient.
  return jax.shard_map(
      local, mesh=mesh, out_specs=replicated, check_vma=False,
      in_specs=(replicated, data, data, data, replicated))(
          params, examples, weights, classes, extra)


@functools.partial(jax.jit, static_argnames=('per_example_loss', 'mesh',
                                             'microbatch_size', 'statistics',
                                             'fast'))
def sharded_coherence_stats(per_example_loss: PerExampleLoss, mesh, params,
                            examples, weights=None, classes=None, extra=(), *,
                            microbatch_size=None, statistics='all',
                            fast=True) -> dict:
  """`coherence_stats` with examples sharded along the mesh's 'data' axis.

  Each device computes the per-example gradients of its own examples
  (`microbatch_size` is per device) and only the sums are reduced across
  devices. Leaving the per-example (batch-grouped) conv gradients to the
  automatic partitioner instead gives wrong norms on XLA:CPU (jax 0.10).
  All m examples are device arrays for the whole pass;
  `streamed_coherence_stats` holds one chunk at a time.
  """
  _check_statistics(statistics)
  weights, classes = _defaults(examples, weights, classes)
  acc = _sharded_pass(per_example_loss, mesh, params, examples, weights,
                      classes, extra, microbatch_size, statistics, fast)
  return _reduce(acc, acc.pop('weight'))


_chunk_pass = jax.jit(_sharded_pass, static_argnames=(
    'per_example_loss', 'mesh', 'microbatch_size', 'statistics', 'fast'))


def _zero_sums(chunk) -> dict:
  """The carry of `_add_chunk` before any chunk, as host zeros (made
  eagerly leaf by leaf on the device, they cost 5 s of the quick start's
  54)."""
  zeros = lambda v: np.zeros(v.shape, v.dtype)
  out = {k: jax.tree.map(lambda v: (zeros(v), zeros(v)), v)
         for k, v in chunk.items() if k not in _NOT_SUMMED}
  if 'moments' in chunk:
    out['moments'] = jax.tree.map(zeros, chunk['moments'])
    out['confusion'] = np.full((), np.inf, np.float32)
  return out


@jax.jit
def _add_chunk(carry, chunk):
  """carry + one chunk's sums: compensated sums, moments by Chan's merge."""
  moments = carry.pop('moments', None)
  confusion = carry.pop('confusion', None)
  out = _compensated_sum().update(carry, {k: chunk[k] for k in carry}, None)
  if moments is not None:
    out['moments'] = _merge_moments(moments, chunk['moments'])
    out['confusion'] = jnp.minimum(confusion, chunk['confusion'])
  return out


@jax.jit
def _finish(sums, per_example):
  """The stream's sums and per-example values -> `_reduce` (one compiled
  program: run eagerly, `_reduce` cost 2 s of the quick start's 38)."""
  kept = {k: sums.pop(k) for k in _NOT_SUMMED if k in sums}
  acc = {**_compensated_sum().finalize(sums), **per_example, **kept}
  return _reduce(acc, acc.pop('weight'))


def streamed_coherence_stats(per_example_loss: PerExampleLoss, mesh, params,
                             chunks, extra=(), *, statistics='all',
                             fast=True, chunk_extra=None) -> dict:
  """`sharded_coherence_stats` over an iterable of chunks, one at a time.

  Each chunk is (examples, weights, classes), global arrays sharded along
  'data' and of one shape for all chunks (pad with weight-0 rows): one
  compiled pass serves them all, and device memory is that of one chunk
  whatever the number of examples (the probe sizes of the papers, 40K-80K
  ImageNet images, never reside on the devices). Sums are carried across
  chunks with compensation (moments with Chan's merge), per-example values
  gathered on the host. `chunk_extra(examples)`, where given, replaces
  `extra` for each chunk (e.g. the chunk's own BatchNorm statistics).
  Each chunk is one sub-sample of rho's interval: `subsamples` holds its
  per-leaf ||sum g||^2 and sum ||g||^2 [chunks, leaves] and its count.
  """
  _check_statistics(statistics)
  sums, per_example = None, []
  for examples, weights, classes in chunks:
    acc = _chunk_pass(per_example_loss, mesh, params, examples, weights,
                      classes, chunk_extra(examples) if chunk_extra else extra,
                      None, statistics, fast)
    summed = {k: acc[k] for k in _SUMMED + _NOT_SUMMED if k in acc}
    sums = _add_chunk(_zero_sums(summed) if sums is None else sums, summed)
    per_example.append(jax.device_get(
        {k: acc[k] for k in ('loss', 'sq_norms', 'weight', 'numerators')}))
  if sums is None:
    raise ValueError('streamed_coherence_stats: no chunks')
  out = _finish(sums, {k: np.concatenate([c[k] for c in per_example])
                       for k in ('loss', 'sq_norms', 'weight')})
  out['subsamples'] = {
      'numerators': np.stack([c['numerators'] for c in per_example]),
      'denominators': np.stack([c['weight'] @ c['sq_norms']
                                for c in per_example]),
      'm': np.array([c['weight'].sum() for c in per_example])}
  return out


def rho_interval(numerators, denominators, counts, estimate: float,
                 confidence: float = CONFIDENCE) -> tuple[float, float]:
  """A t-interval for rho around `estimate` from K disjoint sub-samples.

  numerators / denominators / counts [K]: each sub-sample's ||sum g||^2,
  sum ||g||^2 and number of examples. The standard error is the spread of
  the K sub-sample estimates over sqrt(K): rho_hat is a ratio of U-statistics
  whose leading variance term, 4 Var(g . mu) / m, the mean of K sub-sample
  estimates shares, while their pair term grows K-fold, so the interval is
  conservative where rho is near 0 and exact to first order elsewhere (its
  coverage on synthetic gradients of known rho: tests/test_coherence.py).
  Sub-samples of fewer than 2 examples or zero gradients are left out; with
  fewer than 2 left the bounds are nan.
  """
  num, den, n = (np.asarray(x, np.float64) for x in (numerators, denominators,
                                                     counts))
  ok = (n >= 2) & (den > 0)
  estimates = (num[ok] / den[ok] - 1) / (n[ok] - 1)
  k = len(estimates)
  if k < 2:
    return float('nan'), float('nan')
  half = (scipy.stats.t.ppf((1 + confidence) / 2, k - 1)
          * estimates.std(ddof=1) / np.sqrt(k))
  return float(estimate - half), float(estimate + half)


def summarize(stats: dict, paths: list[str],
              group_of: Callable[[str], str] = top_module,
              report_m: int = 0) -> dict:
  """Metrics (nested dict of Python floats) from `coherence_stats` arrays;
  with `report_m` = M > 0, each m-coherence also read at m = M
  (`m_coherence_at_M` = 1 + (M - 1) rho)."""
  sub = stats.get('subsamples')
  s = jax.tree.map(lambda x: np.asarray(x, np.float64), jax.device_get(
      {k: v for k, v in stats.items() if k != 'subsamples'}))
  m = s['m']

  full = 'gsnr_sum' in s  # statistics='all'

  def ratios(idx):
    """The ratios of the leaves `idx` together (sums, not averages)."""
    num, den = float(s['numerators'][idx].sum()), float(
        s['denominators'][idx].sum())
    mc = num / den if den else float('nan')
    rho = (mc - 1) / (m - 1) if m > 1 else float('nan')
    low, high = (rho_interval(sub['numerators'][:, idx].sum(1),
                              sub['denominators'][:, idx].sum(1), sub['m'],
                              rho) if sub is not None
                 else (float('nan'), float('nan')))
    out = {'m_coherence': mc, 'alpha': mc / m, 'rho': rho, 'rho_low': low,
           'rho_high': high}
    if report_m:
      out[f'm_coherence_at_{report_m}'] = 1 + (report_m - 1) * rho
    if full:
      count = float(s['gsnr_count'][idx].sum())
      out['gsnr'] = (float(s['gsnr_sum'][idx].sum()) / count if count
                     else float('nan'))
    return out

  per_layer = {p: ratios([i]) for i, p in enumerate(paths)}
  groups = {}
  for i, p in enumerate(paths):
    groups.setdefault(group_of(p), []).append(i)
  per_group = {g: ratios(idx) for g, idx in groups.items()}
  total = ratios(list(range(len(paths))))
  real = s['weight'] > 0
  norms = np.sqrt(s['sq_norm'][real])
  quantiles = lambda v: {f'q{round(100 * q)}': float(np.quantile(v, q))
                         for q in QUANTILES} if len(v) else {}
  out = {
      **total,
      'gradient_diversity': (1 / total['m_coherence'] if total['m_coherence']
                             else float('inf')),
      'sq_norm_of_sum': float(s['numerators'].sum()),
      'sum_of_sq_norms': float(s['denominators'].sum()),
      'm': float(m),
      'mean_loss': float(s['loss'][real].sum() / m),
      'mean_sq_grad_norm': float(s['denominators'].sum() / m),
      'loss': quantiles(s['loss'][real]),
      'grad_norm': quantiles(norms),
      'per_layer': per_layer,
      'per_group': per_group,
  }
  if full:
    nz = float(s['num_nonzero'])
    pairs = s['pairs']
    mean_of = lambda k, j: (float(pairs[k, j] / pairs[k, 2]) if pairs[k, 2]
                            else float('nan'))
    out['avg_cosine'] = ((float(s['sq_norm_of_unit_sum']) - nz)
                         / (nz * (nz - 1)) if nz > 1 else float('nan'))
    out['block_gradient_confusion'] = (float(s['confusion'])
                                 if np.isfinite(s['confusion'])
                                 else float('nan'))  # no pair
    out['stiffness'] = {'sign_same_class': mean_of(0, 0),
                        'cos_same_class': mean_of(0, 1),
                        'sign_diff_class': mean_of(1, 0),
                        'cos_diff_class': mean_of(1, 1)}
  return out


def flatten(metrics: dict, prefix: str = '', sep: str = '/') -> dict:
  """{'a': {'b': 1.0}} -> {'a/b': 1.0}: metric names for metrics.jsonl
  (sep='.': a config's dotted field names)."""
  out = {}
  for k, v in metrics.items():
    if isinstance(v, dict):
      out.update(flatten(v, f'{prefix}{k}{sep}', sep))
    else:
      out[f'{prefix}{k}'] = v
  return out


def m_coherence(per_example_loss: PerExampleLoss, params, examples, *,
                classes=None, microbatch_size: int | None = None,
                group_of: Callable[[str], str] = top_module,
                statistics: str = 'all', fast: bool = True) -> dict:
  """m-coherence and the related metrics of `examples`' gradients at `params`.

  Args:
    per_example_loss: `(params, example) -> scalar loss of one example`.
    params: pytree of trainable parameters; gradients are w.r.t. all of it.
    examples: pytree whose leaves have a leading axis of size m.
    classes: optional int [m], the classes for same/different-class stiffness.
    microbatch_size: per-example gradients materialized at once (None: all
      m). Must divide m (a ValueError names the nearest divisor below it).
    group_of: parameter path -> layer group name (default: top module).
    statistics: 'all', or 'norms' for only the metrics of the summed gradient
      and per-example norms (no gsnr, avg_cosine, stiffness).
    fast: with 'norms', per-layer taps instead of per-example gradients.

  Returns:
    Python floats: `m_coherence`, `alpha`, `gsnr`, `gradient_diversity`,
    `avg_cosine`, `stiffness` {sign|cos}_{same|diff}_class,
    `block_gradient_confusion` (min g_i . g_j over the stiffness pairs),
    `rho` (with `rho_low`, `rho_high`: nan here, one resident pass),
    `sq_norm_of_sum`
    (||sum g_i||^2), `sum_of_sq_norms` (sum ||g_i||^2), `m`, `mean_loss`,
    `mean_sq_grad_norm`, quantiles `loss` and `grad_norm` {q0..q100}, and
    `per_layer` / `per_group`: {name: {m_coherence, alpha, gsnr}}.
  """
  stats = coherence_stats(per_example_loss, params, examples, None, classes,
                          microbatch_size=microbatch_size,
                          statistics=statistics, fast=fast)
  return summarize(stats, leaf_paths(params), group_of)
