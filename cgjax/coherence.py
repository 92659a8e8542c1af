"""Per-example gradient statistics: m-coherence, total and per layer.

For m examples with per-example loss gradients g_1..g_m,

    m-coherence = ||sum_i g_i||^2 / sum_i ||g_i||^2,   alpha = m-coherence / m,

which needs only the summed gradient and each example's squared gradient norm
(O(m) work). Per-example gradients come from `optax.microbatching.micro_grad`,
which materializes them one microbatch at a time, so memory is
O(params x microbatch) for any m. Per-layer values restrict each g_i to one
parameter leaf; the total is the ratio of the summed numerators and
denominators, not an average of the per-leaf ratios.
"""
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

PerExampleLoss = Callable[[Any, Any], jax.Array]


def leaf_paths(tree) -> list[str]:
  """'/'-joined key paths of a pytree's leaves, in tree_leaves order."""
  paths, _ = zip(*jax.tree_util.tree_flatten_with_path(tree)[0])
  return ['/'.join(str(getattr(k, 'key', getattr(k, 'idx', k))) for k in p)
          for p in paths]


def _sq_norm_per_leaf(grads):
  return [jnp.sum(jnp.square(g.astype(jnp.float32)))
          for g in jax.tree.leaves(grads)]


def _sums(per_example_loss, params, examples, weights, extra,
          microbatch_size):
  """Summed gradient, per-leaf summed squared norms, summed loss, count."""

  def weighted_loss(p, example_and_weight):  # closes over traced `extra`
    example, weight = example_and_weight
    return weight * per_example_loss(p, example, *extra)

  grad_fn = optax.microbatching.micro_grad(
      weighted_loss, argnums=0, batch_argnums=1, keep_batch_dim=False,
      microbatch_size=microbatch_size,
      accumulator=optax.microbatching.AccumulationType.SUM,
      metrics_fn=_sq_norm_per_leaf)
  grad_sum, aux = grad_fn(params, (examples, weights))
  return (grad_sum, jnp.stack([jnp.sum(x) for x in aux.metrics]),
          jnp.sum(aux.values), jnp.sum(weights))


def _summary(params, grad_sum, denominators, loss_sum, m) -> dict:
  numerators = jnp.stack(_sq_norm_per_leaf(grad_sum))
  total_num, total_den = jnp.sum(numerators), jnp.sum(denominators)
  mc = total_num / total_den
  return {
      'm_coherence': mc,
      'alpha': mc / m,
      'sq_norm_of_sum': total_num,
      'sum_of_sq_norms': total_den,
      'm': m,
      'mean_loss': loss_sum / m,
      'mean_sq_grad_norm': total_den / m,
      'per_layer': dict(zip(leaf_paths(params), numerators / denominators)),
  }


def _default_weights(examples, weights):
  if weights is None:
    return jnp.ones((jax.tree.leaves(examples)[0].shape[0],), jnp.float32)
  return weights


@functools.partial(jax.jit, static_argnames=('per_example_loss',
                                             'microbatch_size'))
def coherence_stats(per_example_loss: PerExampleLoss, params, examples,
                    weights=None, *extra, microbatch_size=None) -> dict:
  """Jittable core of `m_coherence` on one device; returns arrays.

  `weights` (default all ones) must be 0 or 1: weight-0 rows are padding and
  contribute nothing, which lets callers pad m to a multiple of the
  microbatch (and device) count. `extra` arguments reach
  `per_example_loss(params, example, *extra)` unchanged and undifferentiated
  (e.g. fixed BatchNorm statistics). For examples sharded over a mesh use
  `sharded_coherence_stats`.
  """
  weights = _default_weights(examples, weights)
  return _summary(params, *_sums(per_example_loss, params, examples, weights,
                                 extra, microbatch_size))


@functools.partial(jax.jit, static_argnames=('per_example_loss', 'mesh',
                                             'microbatch_size'))
def sharded_coherence_stats(per_example_loss: PerExampleLoss, mesh, params,
                            examples, weights=None, *extra,
                            microbatch_size=None) -> dict:
  """`coherence_stats` with examples sharded along the mesh's 'data' axis.

  Each device computes the per-example gradients of its own examples
  (`microbatch_size` is per device) and only the sums are reduced across
  devices. Leaving the per-example (batch-grouped) conv gradients to the
  automatic partitioner instead gives wrong norms on XLA:CPU (jax 0.10).
  """
  weights = _default_weights(examples, weights)
  replicated = jax.sharding.PartitionSpec()
  data = jax.sharding.PartitionSpec('data')

  def local(p, ex, w, *e):
    return jax.lax.psum(_sums(per_example_loss, p, ex, w, e, microbatch_size),
                        'data')

  # check_vma=False: with it, the gradient w.r.t. the replicated params would
  # be summed over devices implicitly, and each "per-example" norm would be
  # that of the whole batch's gradient.
  sums = jax.shard_map(
      local, mesh=mesh, out_specs=replicated, check_vma=False,
      in_specs=(replicated, data, data, *[replicated] * len(extra)))(
          params, examples, weights, *extra)
  return _summary(params, *sums)


def m_coherence(per_example_loss: PerExampleLoss, params, examples, *,
                microbatch_size: int | None = None) -> dict:
  """m-coherence of the per-example gradients of `examples` at `params`.

  Args:
    per_example_loss: `(params, example) -> scalar loss of one example`.
    params: pytree of trainable parameters; gradients are w.r.t. all of it.
    examples: pytree whose leaves have a leading axis of size m.
    microbatch_size: per-example gradients materialized at once (None: all
      m). Must divide m.

  Returns:
    Python floats: `m_coherence`, `alpha`, `sq_norm_of_sum` (||sum g_i||^2),
    `sum_of_sq_norms` (sum ||g_i||^2), `m`, `mean_loss`, `mean_sq_grad_norm`,
    and `per_layer`: {'/'-joined parameter path: m-coherence of that leaf}.
  """
  stats = jax.device_get(coherence_stats(per_example_loss, params, examples,
                                         microbatch_size=microbatch_size))
  per_layer = {k: float(v) for k, v in stats.pop('per_layer').items()}
  return {**{k: float(v) for k, v in stats.items()}, 'per_layer': per_layer}
