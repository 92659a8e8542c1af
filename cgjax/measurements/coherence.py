"""m-coherence probes: fixed samples of examples through cgjax.coherence.

Each probe set is a fixed sample of m examples (`pipeline.fixed_sample`:
chosen by key and seed alone, so every trial of a sweep with one seed probes
the same test examples), kept on the devices as sharded arrays. Metrics:
`{name}/{set}/...`, every key of `coherence.summarize` flattened (e.g.
`probe/clean/m_coherence`, `probe/noisy/per_layer/dense0/kernel/alpha`).
The probe ids go to `{name}_ids.json` ('probe_ids.json' for the default
name `probe`) as stable example keys.

Fields:
  m                examples per probe set
  sets             of 'clean', 'noisy', 'test' and 'train' (clean and noisy
                   mixed); a set with fewer than m candidates (clean at noise
                   1, noisy at noise 0) is skipped with a note in the log
  microbatch_size  examples per microbatch, per device
  statistics       'all': every metric of cgjax/coherence.py (per-example
                   gradients, vmap); 'norms': m-coherence, alpha, gradient
                   diversity (total, per layer, per group) and quantiles only,
                   from per-layer taps in one ordinary backward pass
                   (cgjax/layer_norms.py)
"""
import functools

import jax
from cgjax import coherence
from cgjax import losses
from cgjax import measurements
from cgjax import parallel
from cgjax import workdir as workdir_lib
from cgjax.data import pipeline

FIELDS = {'m': 500, 'sets': ('clean', 'noisy', 'test'),
          'microbatch_size': 100, 'statistics': 'all'}


class Measurement:

  def __init__(self, name, cfg, ctx):
    if cfg.statistics not in coherence.STATISTICS:
      raise ValueError(f'measurements.{name}.statistics must be one of '
                       f'{coherence.STATISTICS}, got {cfg.statistics!r}')
    measurements.at_least(name, cfg, m=1, microbatch_size=1)
    pools = pipeline.pools(ctx.dataset)
    unknown = [s for s in cfg.sets if s not in pools]
    if unknown:
      raise ValueError(f'measurements.{name}.sets: unknown set(s) {unknown}; '
                       f'choose from {tuple(pools)}')
    self._name, self._ctx = name, ctx
    self._index, self._skipped = {}, {}
    for set_name in cfg.sets:
      split, candidates = pools[set_name]
      if cfg.m > len(split):
        raise ValueError(f'measurements.{name}.m={cfg.m} is larger than the '
                         f'{len(split)} examples of the split of set '
                         f'{set_name!r}')
      index = pipeline.fixed_sample(split, candidates, cfg.m, ctx.config.seed)
      if len(index) < cfg.m:
        self._skipped[set_name] = len(index)
      else:
        self._index[set_name] = (split, index)
    self._probes = {s: _device_arrays(split, index, cfg.microbatch_size,
                                      ctx.mesh)
                    for s, (split, index) in self._index.items()}
    self._fn = functools.partial(coherence.sharded_coherence_stats,
                                 losses.make_per_example_loss(ctx.model),
                                 ctx.mesh, statistics=cfg.statistics)
    self._ids_file = ('probe_ids.json' if name == 'probe'
                      else f'{name}_ids.json')
    self._m = cfg.m

  def describe(self) -> str:
    skipped = ''.join(f'; {s} skipped ({n} candidates < m={self._m})'
                      for s, n in self._skipped.items())
    return f'{self._name}: {", ".join(self._index) or "no sets"}{skipped}'

  def run(self, state, step):
    del step
    out = {}
    for set_name, (examples, weights, micro) in self._probes.items():
      stats = self._fn(state.params, examples, weights, examples['label'],
                       (state.batch_stats,), microbatch_size=micro)
      out.update(coherence.flatten(
          coherence.summarize(stats, self._ctx.param_paths,
                              self._ctx.group_of),
          f'{self._name}/{set_name}/'))
    return out

  def summary(self, metrics):
    return 'm-coherence ' + ', '.join(
        f'{s}={metrics[f"{self._name}/{s}/m_coherence"]:.2f}'
        for s in self._probes)

  def finalize(self, workdir):
    workdir_lib.write_json(workdir, self._ids_file, {
        s: split.keys[index].tolist()
        for s, (split, index) in self._index.items()})


def _device_arrays(split, index, microbatch_size, mesh):
  """(examples, weights, per-device microbatch) as sharded global arrays,
  padded with weight-0 rows to a whole number of microbatches."""
  micro = min(microbatch_size, len(index))
  micro = -(-micro // mesh.size) * mesh.size  # round up to the device count
  padded = -(-len(index) // micro) * micro
  rows = pipeline.pad_batch(split, index, padded)
  local = pipeline.local_rows(padded, jax.process_index(), jax.process_count())
  rows = {k: v[local] for k, v in rows.items()}
  arrays = parallel.to_global(rows, mesh)
  return ({k: arrays[k] for k in ('image', 'label')}, arrays['weight'],
          micro // mesh.size)
