"""m-coherence against the sample size m, on one checkpoint.

    python -m experiments.fig_m_dependence WORKDIR [--step N] [--out DIR]

m-coherence is defined for a sample of m examples, and how it grows with m
is what it says: it stays near 1 when the gradients are pairwise orthogonal
(each example helps only itself) and grows like m when they are all equal.
For m = 2, 4, 8, ... up to each probe set's size (its candidates: the clean
or noisy training examples, the test set), every m is measured on the
checkpoint (`cgjax.runs.Run.evaluate`: one coherence measurement per m,
statistics 'norms', the run's BatchNorm mode), each sample the first m of
the set's fixed hash order, so the samples are nested. The figure draws
m-coherence and alpha = m-coherence / m against m on log axes, with the
orthogonal (1, 1/m) and identical (m, 1) baselines; the values go to
m_dependence.md beside it. A third panel draws rho = (m-coherence - 1) /
(m - 1) with its 95% interval (from each sample's disjoint chunks; none
below 16 examples, where a chunk holds fewer than 2): where m-coherence
grows with m, rho stays flat, which is why the claims and comparisons
across probe sizes are made on rho. Evaluations go to OUT/evaluations.
"""
import argparse

import numpy as np

from cgjax import measurements
from cgjax import runs as cgjax_runs
from cgjax import storage
from . import runs as runs_lib

SETS = ('clean', 'noisy', 'test')


def sizes(run) -> dict[str, int]:
  """Candidates of each probe set in the run's data (noise applied)."""
  from cgjax import data as data_lib  # pylint: disable=g-import-not-at-top
  from cgjax.data import pipeline  # pylint: disable=g-import-not-at-top
  pools = pipeline.pools(data_lib.load(run.config.data, run.config.noise))
  return {s: int(np.sum(pools[s][1])) for s in SETS}


def sample_sizes(largest: int) -> list[int]:
  """2, 4, 8, ... <= largest."""
  return [2 ** k for k in range(1, int(np.log2(max(largest, 2))) + 1)]


def measure(run, step, out_dir) -> dict[str, dict[int, dict]]:
  """{set: {m: {'m_coherence', 'alpha', 'rho', 'rho_low', 'rho_high'}}}
  on the checkpoint at `step`."""
  available = sizes(run)
  probe = run.config.measurements.get('probe', {})
  bn = probe.get('bn', 'running')
  specs = {}
  for m in sample_sizes(max(available.values())):
    sets = tuple(s for s in SETS if available[s] >= m)
    specs[f'm{m}'] = measurements.spec(
        'coherence', m=m, sets=sets, statistics='norms', bn=bn,
        microbatch_size=min(m, probe.get('microbatch_size', 100)))
  scalars = run.evaluate(step, specs, storage.join(out_dir, 'evaluations'))
  out = {s: {} for s in SETS}
  for name in specs:
    m = int(name[1:])
    for s in SETS:
      key = f'{name}/{s}/m_coherence'
      if key in scalars:
        out[s][m] = {k: scalars[f'{name}/{s}/{k}'] for k in
                     ('m_coherence', 'alpha', 'rho', 'rho_low', 'rho_high')}
  return {s: v for s, v in out.items() if v}


def plot(values, title: str, out_dir: str) -> str:
  fig, axes = runs_lib.panels(3, width=4.2, height=3.4)
  every_m = sorted({m for v in values.values() for m in v})
  ms = np.array(every_m, float)
  for ax, key, (ortho, ident) in zip(
      axes, ('m_coherence', 'alpha'), ((np.ones_like(ms), ms),
                                       (1 / ms, np.ones_like(ms)))):
    ax.plot(ms, ident, color='gray', lw=0.8, ls='--',
            label='identical gradients')
    ax.plot(ms, ortho, color='gray', lw=0.8, label='orthogonal gradients')
    for s, by_m in values.items():
      m = sorted(by_m)
      ax.plot(m, [by_m[i][key] for i in m], marker='o', ms=3,
              label=f'{s} probe', **runs_lib.PROBE_STYLE[s])
    ax.set(xscale='log', yscale='log', xlabel='sample size m',
           ylabel='m-coherence' if key == 'm_coherence'
           else 'alpha = m-coherence / m')
  ax = axes[2]
  ax.axhline(1.0, color='gray', lw=0.8, ls='--', label='_identical')
  ax.axhline(0.0, color='gray', lw=0.8, label='_orthogonal')
  for s, by_m in values.items():
    m = sorted(by_m)
    style = runs_lib.PROBE_STYLE[s]
    ax.plot(m, [by_m[i]['rho'] for i in m], marker='o', ms=3, **style)
    ax.fill_between(m, [by_m[i]['rho_low'] for i in m],
                    [by_m[i]['rho_high'] for i in m], alpha=0.2, lw=0,
                    color=style.get('color'))
  ax.set(xscale='log', xlabel='sample size m',
         ylabel='rho = (m-coherence - 1) / (m - 1)\n(band: 95% interval)')
  ax.set_yscale('symlog', linthresh=1e-3)
  runs_lib.title(axes[0], title)
  runs_lib.legend_once(fig, axes)
  return runs_lib.save(fig, out_dir, 'm_dependence')


def table(values) -> str:
  sets = list(values)
  lines = ['| m | ' + ' | '.join(f'{s} m-coherence | {s} alpha | {s} rho '
                                 '[95% interval]' for s in sets) + ' |',
           '|---' * (1 + 3 * len(sets)) + '|']
  for m in sorted({m for v in values.values() for m in v}):
    cells = []
    for s in sets:
      v = values[s].get(m)
      cells += ([f'{v["m_coherence"]:.3g}', f'{v["alpha"]:.3g}',
                 f'{v["rho"]:.3g} [{v["rho_low"]:.3g}, {v["rho_high"]:.3g}]']
                if v else ['-', '-', '-'])
    lines.append(f'| {m} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('workdir')
  parser.add_argument('--step', type=int, default=None,
                      help='checkpoint step (default: the newest)')
  parser.add_argument('--out', default='',
                      help='default: WORKDIR/m_dependence')
  args = parser.parse_args()
  try:
    run = cgjax_runs.load(args.workdir)
    if not isinstance(run, cgjax_runs.Run):
      raise ValueError(f'{args.workdir} holds several runs (a sweep dir); '
                       'give one workdir')
    saved = run.checkpoint_steps()
    step = saved[-1] if args.step is None and saved else args.step
    out_dir = args.out or storage.join(args.workdir, 'm_dependence')
    values = measure(run, step, out_dir)
  except ValueError as err:  # no such run or checkpoint: one line
    raise SystemExit(f'error: {err}') from None
  rate = run.config.noise.rate
  plot(values, f'{storage.basename(args.workdir)}, step {step}, noise '
       f'{rate:g}', out_dir)
  runs_lib.write_text(out_dir, 'm_dependence.md', table(values))


if __name__ == '__main__':
  main()
