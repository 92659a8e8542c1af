"""Shares of a step's first-order loss decrease due to pristine vs corrupt
examples (Coherent Gradients, Chatterjee 2020), with the permuted null model.

On the training batch of the next update (`loader.batch(step)`, what the
step from these params descends on; with `batches` = k > 1, the next k
training batches together, all at the current params, which lowers the
estimator's variance), with g the batch gradient and g_p, g_c the
contributions of its pristine and corrupt examples (g = g_p + g_c):

    f_p = <g, g_p> / <g, g>        f_c = <g, g_c> / <g, g>

A gradient step of size eta lowers the batch loss by eta <g, g> to first
order, f_p of it through the pristine examples' losses. The null model
recomputes both with the pristine/corrupt designation randomly permuted
within the batch (same counts; `null_permutations` permutations, averaged):
its f_p is on average the pristine fraction of the batch. Pristine means not
`is_noisy` (see `noise.noisy_means`). Batches without both kinds give no
row. All are inner products <g, g_j> = c_j . (J g), with J the Jacobian of
the per-example losses and c_j the designation's weights: one batched
backward pass (g) and one forward-mode pass (J g), no per-example gradients. By default (`bn='train'`) the forward pass is the
training one (BatchNorm with batch statistics, differentiated through
them), so g is the update's gradient; 'running' and 'batch' use the
per-example definition of the probes (running averages, or the batch's
statistics held constant), under which g is a sum of per-example gradients.

Metrics: {name}/f_p, f_c, null_f_p, null_f_c, pristine_frac.

Fields:
  null_permutations   permutations of the designation for the null model
  batches             consecutive training batches measured together (1: the
                      step's own batch, the paper's definition)
  bn                  BatchNorm: 'train' (batch statistics, as the update),
                      'running' or 'batch' (held constant; as probe.bn)
"""
import jax
import numpy as np

from cgjax import losses
from cgjax import measurements
from cgjax import parallel
from cgjax.data import pipeline

FIELDS = {'null_permutations': 4, 'batches': 1, 'bn': 'train'}
BN_MODES = ('train',) + losses.BN_MODES

# Policies (cgjax.measurements): every value must stay finite (the default).
FIGURES = ('fig_shares',)



def make_inner_products(model, bn: str = 'train'):
  """(params, batch_stats, batch, cotangents [k, B]) -> <g, g_j> [k], where
  g_j = sum_i cotangents[j, i] * grad loss_i and g = g_0."""

  def inner_products(params, batch_stats, batch, cotangents):
    if bn == 'batch' and batch_stats:
      batch_stats = losses.batch_statistics(model, params, batch_stats,
                                            batch['image'])

    def per_example_losses(p):
      if bn == 'train':
        logits, _ = model.apply({'params': p, 'batch_stats': batch_stats},
                                batch['image'], train=True,
                                mutable=['batch_stats'])
      else:
        logits = model.apply({'params': p, 'batch_stats': batch_stats},
                             batch['image'], train=False)
      return losses.cross_entropy(logits, batch['label'])

    # <g, g_j> = <J^T c_0, J^T c_j> = c_j . (J g): one backward pass for g
    # and one forward-mode pass for J g serve every cotangent (a backward
    # pass per cotangent cost 8 s of the quick start's 35).
    _, vjp = jax.vjp(per_example_losses, params)
    g = vjp(cotangents[0])[0]
    _, directional = jax.jvp(per_example_losses, (params,), (g,))
    return cotangents @ directional

  return inner_products


def designations(is_noisy: np.ndarray, permutations: int, seed) -> np.ndarray:
  """Cotangent rows: all, pristine, corrupt, then pristine and corrupt of
  each permutation of the designation."""
  pristine = (~is_noisy).astype(np.float32)
  rng = np.random.default_rng(seed)
  rows = [np.ones_like(pristine), pristine, 1 - pristine]
  for _ in range(permutations):
    p = rng.permutation(pristine)
    rows += [p, 1 - p]
  return np.stack(rows)


class Measurement:

  def __init__(self, name, cfg, ctx):
    measurements.at_least(name, cfg, null_permutations=1, batches=1)
    if cfg.bn not in BN_MODES:
      raise ValueError(f'measurements.{name}.bn must be one of {BN_MODES}, '
                       f'got {cfg.bn!r}')
    self._name, self._ctx = name, ctx
    self._permutations, self._batches = cfg.null_permutations, cfg.batches
    repl = parallel.replicated(ctx.mesh)
    self._fn = jax.jit(make_inner_products(ctx.model, cfg.bn),
                       out_shardings=repl)

  def _batch(self, step):
    """(is_noisy of the next `batches` training batches, one after the
    other; the position there of each row of the global array, whose rows
    are process-major: each process's rows of every batch, then the next
    process's; this process's rows as a global array)."""
    loader = self._ctx.loader
    size, steps = loader.global_batch, range(self._batches)
    is_noisy = loader.split.is_noisy[np.concatenate(
        [loader.global_indices(step + s) for s in steps])]
    positions = np.concatenate([
        np.arange(s * size, (s + 1) * size)[
            pipeline.local_rows(size, p, jax.process_count())]
        for p in range(jax.process_count()) for s in steps])
    local = list(loader.batches(step, step + self._batches))
    batch = {k: np.concatenate([b[k] for b in local]) for k in local[0]}
    return is_noisy, positions, parallel.to_global(batch, self._ctx.mesh)

  def run(self, state, step):
    is_noisy, positions, batch = self._batch(step)
    if is_noisy.all() or not is_noisy.any():
      return {}
    # Permuted in batch order, then laid out as the rows are: the null model
    # is the same for any process count.
    rows = designations(is_noisy, self._permutations,
                        [self._ctx.config.seed, step, 17])[:, positions]
    dots = np.asarray(jax.device_get(self._fn(
        state.params, state.batch_stats, batch,
        parallel.replicate(rows, self._ctx.mesh))), np.float64)
    f = dots / dots[0]
    out = {'f_p': f[1], 'f_c': f[2], 'null_f_p': np.mean(f[3::2]),
           'null_f_c': np.mean(f[4::2]),
           'pristine_frac': float(np.mean(~is_noisy))}
    return {f'{self._name}/{k}': float(v) for k, v in out.items()}

  def summary(self, metrics):
    get = lambda k: metrics[f'{self._name}/{k}']
    return (f'loss-decrease shares f_p={get("f_p"):.3f} f_c={get("f_c"):.3f}'
            f' (null {get("null_f_p"):.3f} / {get("null_f_c"):.3f})')
