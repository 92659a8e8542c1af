"""m-coherence probes: fixed samples of examples through cgjax.coherence.

Each probe set is a fixed sample of m examples (`pipeline.fixed_sample`:
chosen by key and seed alone, so every trial of a sweep with one seed probes
the same test examples). At each probe the examples stream through the
statistics in chunks of one microbatch per device (each process reads and
decodes only its own rows of a chunk, the next chunk read while the current
one runs), so device memory does not grow with m: the papers' 40K-80K
ImageNet images per set never reside on the devices. Metrics:
`{name}/{set}/...`, every key of `coherence.summarize` flattened (e.g.
`probe/clean/m_coherence`, `probe/clean/rho_low`,
`probe/noisy/per_layer/dense0/kernel/alpha`).
The probe ids go to `{name}_ids.json` ('probe_ids.json' for the default
name `probe`) as stable example keys.

Fields:
  m                examples per probe set
  sets             of 'clean', 'noisy', 'test', 'train' (clean and noisy
                   mixed, the authors' "train sample") and the data's extra
                   test sets ('validation'); a set with fewer than m
                   candidates (clean at noise 1, noisy at noise 0) is skipped
                   with a note in the log
  microbatch_size  examples per device in one chunk of the stream (at most:
                   see subsamples)
  subsamples       the least number of chunks, each a disjoint sub-sample
                   of rho's interval (`rho_low`, `rho_high`, a 95%
                   t-interval from the chunks' own estimates): a chunk holds
                   at most ceil(m / (subsamples x devices)) examples per
                   device (with bn='batch', microbatch_size x devices
                   exactly, whatever their number)
  report_m         M > 0: also write `m_coherence_at_M` = 1 + (M - 1) rho,
                   the m-coherence an M-example probe would read (default
                   50,000: the 50K-image ImageNet sample of the papers'
                   later study); 0: not written
  layers           parameter paths (e.g. 'stem_conv/kernel') whose per-layer
                   series are written; () = every leaf. The papers follow the
                   first conv, an intermediate layer and the final dense one
                   (fig_layers draws them)
  statistics       'all': every metric of cgjax/coherence.py (per-example
                   gradients, vmap); 'norms': m-coherence, alpha, gradient
                   diversity (total, per layer, per group) and quantiles only,
                   from per-layer taps in one ordinary backward pass
                   (cgjax/layer_norms.py)
  bn               BatchNorm in the per-example gradients: 'running' (the
                   running averages, eval mode, as the authors' W&S trainer
                   evaluates; they released no gradient measurement code)
                   or 'batch' (each chunk's own statistics, of
                   microbatch_size x devices examples, held constant; m must
                   then be a multiple of the chunk, so no padding row counts)
  all_every        with statistics='norms': every all_every-th step of the
                   probe schedule (the first, step 0, included) takes
                   statistics='all' instead (0: never). The full set costs
                   ~100x the norms on the MLP quick start (per-example
                   gradients: 1 s vs 10-15 ms a set of 500), so the cosine /
                   stiffness / GSNR series are sparser and the m-coherence
                   series stays dense
"""
import contextlib
import functools

import jax

from cgjax import coherence
from cgjax import losses
from cgjax import measurements
from cgjax import parallel
from cgjax import workdir as workdir_lib
from cgjax.data import pipeline

FIELDS = {'m': 500, 'sets': ('clean', 'noisy', 'test'),
          'microbatch_size': 100, 'subsamples': 8, 'report_m': 50_000,
          'statistics': 'all', 'all_every': 0, 'layers': (),
          'bn': 'running'}

# Policies (cgjax.measurements).
FIGURES = ('fig_coherence', 'fig_rho', 'fig_coherence_loss', 'fig_layers',
           'fig_named_layers', 'fig_metrics')


def diverges(key: str) -> bool:
  """The probe's loss and gradient norms; m-coherence itself is 0/0 for
  all-zero gradients (every example fitted), which is no divergence."""
  return key.endswith(('/mean_loss', '/sum_of_sq_norms'))


def headline(key: str) -> bool:
  """Each probe set's whole-model m-coherence and rho (SET/m_coherence,
  SET/rho)."""
  return key.count('/') == 1 and key.endswith(('/m_coherence', '/rho'))



class Measurement:

  def __init__(self, name, cfg, ctx):
    if cfg.statistics not in coherence.STATISTICS:
      raise ValueError(f'measurements.{name}.statistics must be one of '
                       f'{coherence.STATISTICS}, got {cfg.statistics!r}')
    measurements.at_least(name, cfg, m=1, microbatch_size=1, all_every=0,
                          subsamples=1, report_m=0)
    steps = sorted(measurements.schedule_steps(cfg, ctx.config.num_steps))
    self._all_steps = (set(steps[::cfg.all_every]) if cfg.all_every
                       and cfg.statistics == 'norms' else set())
    pools = pipeline.pools(ctx.dataset)
    unknown = [s for s in cfg.sets if s not in pools]
    if unknown:
      raise ValueError(f'measurements.{name}.sets: unknown set(s) {unknown}; '
                       f'choose from {tuple(pools)}')
    unknown = [p for p in cfg.layers if p not in ctx.param_paths]
    if unknown:
      raise ValueError(f'measurements.{name}.layers: no parameter {unknown} '
                       f'in model {ctx.config.model.name!r} (e.g. '
                       f'{", ".join(ctx.param_paths[:3])})')
    self._layers = tuple(cfg.layers)
    self._name, self._ctx = name, ctx
    self.samples, self._skipped = {}, {}
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
        self.samples[set_name] = (split, index)
    # One microbatch per device per chunk, fewer rows where that makes
    # fewer than `subsamples` chunks (rho's interval needs them).
    losses.check_bn_mode(f'measurements.{name}.bn', cfg.bn)
    subsamples = 1 if cfg.bn == 'batch' else cfg.subsamples
    per_device = min(cfg.microbatch_size,
                     -(-cfg.m // (subsamples * ctx.mesh.size)))
    self._chunk = per_device * ctx.mesh.size
    self._bn = cfg.bn
    if cfg.bn == 'batch' and cfg.m % self._chunk:
      raise ValueError(
          f"measurements.{name}.bn='batch' normalizes by each chunk's "
          f'statistics, so m={cfg.m} must be a multiple of the chunk of '
          f'{self._chunk} examples (microbatch_size={cfg.microbatch_size} x '
          f'{ctx.mesh.size} devices): no padding row may count')
    self._batch_statistics = jax.jit(
        functools.partial(losses.batch_statistics, ctx.model),
        out_shardings=parallel.replicated(ctx.mesh))
    self._fn = functools.partial(coherence.streamed_coherence_stats,
                                 losses.make_per_example_loss(ctx.model),
                                 ctx.mesh)
    self._statistics = cfg.statistics
    self._ids_file = ('probe_ids.json' if name == 'probe'
                      else f'{name}_ids.json')
    self._m, self._report_m = cfg.m, cfg.report_m

  def describe(self) -> str:
    skipped = ''.join(f'; {s} skipped ({n} candidates < m={self._m})'
                      for s, n in self._skipped.items())
    full = (f"; statistics='all' at {len(self._all_steps)} of its steps"
            if self._all_steps else '')
    bn = ("; BatchNorm: each chunk's statistics held constant"
          if self._bn == 'batch' else '')
    return (f'{self._name}: {", ".join(self.samples) or "no sets"}{skipped}'
            f'{full}{bn}')

  def kind(self, step) -> str:
    """'all' where a 'norms' probe takes the full statistics (~100x)."""
    return 'all' if step in self._all_steps else ''

  def run(self, state, step):
    statistics = 'all' if step in self._all_steps else self._statistics
    out = {}
    for set_name, (split, index) in self.samples.items():
      chunk_extra = None
      if self._bn == 'batch' and state.batch_stats:
        chunk_extra = lambda examples: (self._batch_statistics(
            state.params, state.batch_stats, examples['image']),)
      stats = self._fn(state.params, self.chunks(split, index),
                       (state.batch_stats,), statistics=statistics,
                       chunk_extra=chunk_extra)
      summary = coherence.summarize(stats, self._ctx.param_paths,
                                    self._ctx.group_of, self._report_m)
      if self._layers:
        summary['per_layer'] = {p: summary['per_layer'][p]
                                for p in self._layers}
      out.update(coherence.flatten(summary, f'{self._name}/{set_name}/'))
    return out

  def summary(self, metrics):
    return 'm-coherence (rho) ' + ', '.join(
        f'{s}={metrics[f"{self._name}/{s}/m_coherence"]:.2f} '
        f'({metrics[f"{self._name}/{s}/rho"]:.4f})' for s in self.samples)

  def chunks(self, split, index):
    """(examples, weights, classes) of `split`'s examples `index`: global
    arrays of one shape, one chunk at a time, read one chunk ahead in a
    background thread. `samples` holds each set's (split, index)."""
    batches = pipeline.padded_batches(split.subset(index), self._chunk,
                                      jax.process_index(), jax.process_count())

    def to_device(batch):
      arrays = parallel.to_global(batch, self._ctx.mesh)
      return ({'image': arrays['image'], 'label': arrays['label']},
              arrays['weight'], arrays['label'])

    with contextlib.closing(pipeline.prefetch(to_device, batches, 1)) as ahead:
      for chunk in ahead:
        measurements.check_stop(self._ctx)  # preemption: stop in seconds
        yield chunk

  def finalize(self, workdir):
    workdir_lib.write_json(workdir, self._ids_file, {
        s: split.keys[index].tolist()
        for s, (split, index) in self.samples.items()})


