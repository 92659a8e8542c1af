"""The papers' small-scale findings as claims checked over seeds.

    python -m experiments.claims SWEEP_DIR [SWEEP_DIR ...] [--out DIR]
    python -m experiments.claims --run --seeds 0 1 2 --workdir runs/claims

Reads noise sweeps of the embedded study (`configs/mnist_mlp.py --sweep`),
one sweep dir per seed (or, with --run, runs them first: one `launch.py
--sweep` per seed, resuming what exists). Each claim has a statistic defined
over a window of probes, never one probe, computed per seed; the table gives
the value per seed, mean and spread ((max - min) / 2), and whether the claim
holds on every seed. Written as claims.md (and printed) in --out (default
the first path, or --workdir).

Statistics (m-coherence of the training probe: the clean probe at noise 0,
the noisy one at noise 1; "smoothed" = running median of 5 consecutive
probes, so that a single unstable probe cannot make a peak):

  2  real vs random labels: peak of the smoothed m-coherence at noise 0
     divided by that at noise 1; holds if >= 2
  3  random labels: median m-coherence of the noisy probe at noise 1 over
     steps >= LATE (after the initial transient); holds if >= 2
  4a partial noise: median over the probes at steps 1..EARLY of clean-probe
     / noisy-probe m-coherence, at every rate in (0, 1); holds if > 1
  4b median first-correct step of clean examples / that of noisy examples
     (learning times), at every partial rate; holds if < 1
  6  median over the loss-shares measurements at steps <= EPOCH of
     f_p - null f_p, at every partial rate; holds if > 0

alpha (= m-coherence / m) is given next to each m-coherence statistic.
"""
import argparse
import os
import subprocess
import sys

import numpy as np

from cgjax import workdir as workdir_lib
from . import fig_learning
from . import runs as runs_lib

EARLY = 400   # steps: the clean examples are fitted by then (10 epochs)
LATE = 100    # steps: after the initial transient
EPOCH = 40    # steps of one epoch of the embedded MNIST at batch 100


def probe(run, name, lo=0, hi=None):
  """(steps, m-coherence) of a probe set within [lo, hi]."""
  steps, values = run.series.get(f'probe/{name}/m_coherence', ((), ()))
  keep = [(s, v) for s, v in zip(steps, values)
          if s >= lo and (hi is None or s <= hi)]
  return ([s for s, _ in keep], [v for _, v in keep])


def m_of(run):
  return run.config['measurements']['probe']['m']


def by_rate(runs):
  """{noise rate: run}; a sweep dir holds one seed, so one run per rate."""
  rates = {}
  for run in runs:
    other = rates.setdefault(round(run.noise, 6), run)
    if other is not run:
      raise ValueError(f'two runs at noise {run.noise:g} ({other.workdir}, '
                       f'{run.workdir}): give one sweep dir per seed')
  return rates


def claim_rows(sweep):
  """{claim: (statistic text, value, holds)} for one seed's sweep."""
  rates = by_rate(sweep)
  rows = {}
  real, random = rates.get(0.0), rates.get(1.0)
  if real and random:
    peak_real = real.peak('probe/clean/m_coherence')[0]
    peak_random = random.peak('probe/noisy/m_coherence')[0]
    rows['2: real-label peak m-coherence far above random-label peak'] = (
        'peak smoothed m-coh noise 0 / noise 1 (>= 2)',
        peak_real / peak_random, peak_real / peak_random >= 2,
        f'{peak_real:.1f} / {peak_random:.1f} (alpha {peak_real / m_of(real):.3f}'
        f' / {peak_random / m_of(random):.3f})')
  if random:
    late = np.median(probe(random, 'noisy', lo=LATE)[1])
    rows['3: random labels: m-coherence clearly above 1'] = (
        f'median m-coh, noise 1, steps >= {LATE} (>= 2)', late, late >= 2,
        f'alpha {late / m_of(random):.4f}')
  partial = [r for rate, r in sorted(rates.items()) if 0 < rate < 1]
  if partial:
    ratios = []
    for r in partial:
      clean, noisy = probe(r, 'clean', 1, EARLY), probe(r, 'noisy', 1, EARLY)
      common = dict(zip(*noisy))
      ratios.append(np.median([v / common[s] for s, v in zip(*clean)
                               if s in common]))
    rows['4a: clean more coherent than noisy early'] = (
        f'min over rates of median clean/noisy m-coh, steps 1-{EARLY} (> 1)',
        min(ratios), min(ratios) > 1,
        ', '.join(f'{r.noise:g}: {x:.2f}' for r, x in zip(partial, ratios)))
    learned = []
    for r in partial:
      times = fig_learning.load_times(r)
      if times is None:
        continue
      first = np.where(times['first_correct'] < 0, np.inf,
                       times['first_correct'])
      noisy = times['is_noisy']
      learned.append((r.noise, np.median(first[~noisy]),
                      np.median(first[noisy])))
    if learned:
      worst = max(c / n for _, c, n in learned)
      rows['4b: clean examples fitted before noisy ones'] = (
          'max over rates of median first-correct step clean / noisy (< 1)',
          worst, worst < 1, ', '.join(f'{rate:g}: {c:g} vs {n:g}'
                                      for rate, c, n in learned))
    excess = []
    for r in partial:
      name = r.measurement('loss_shares')
      series = {k: dict(zip(*r.series.get(f'{name}/{k}', ((), ()))))
                for k in ('f_p', 'null_f_p')}
      diffs = [v - series['null_f_p'][s] for s, v in series['f_p'].items()
               if s <= EPOCH and s in series['null_f_p']]
      if diffs:
        excess.append((r.noise, float(np.median(diffs))))
    if excess:
      least = min(x for _, x in excess)
      rows['6: f_p above its permuted null early'] = (
          f'min over rates of median f_p - null f_p, steps 0-{EPOCH} (> 0)',
          least, least > 0, ', '.join(f'{rate:g}: {x:+.3f}'
                                      for rate, x in excess))
  return rows


def table(sweeps) -> str:
  per_seed = [claim_rows(s) for s in sweeps]
  firsts = [s[0] for s in sweeps]  # one run per sweep stands for its seed
  seeds = [r.config['seed'] for r in firsts]
  columns = runs_lib.seed_columns(firsts)
  lines = ['| claim | statistic | ' + ' | '.join(columns)
           + ' | mean | spread | holds |', '|---' * (len(seeds) + 5) + '|']
  details = []
  for claim in per_seed[0]:
    rows = [p.get(claim) for p in per_seed]
    values = np.array([r[1] if r else np.nan for r in rows])
    holds = all(r and r[2] for r in rows)
    distinct = len(set(seeds))
    verdict = ('NO' if not holds else 'yes (one seed: not yet a claim over '
               'seeds)' if distinct == 1 else f'yes, all {distinct} seeds')
    mean, spread = runs_lib.over_seeds(values, firsts, digits=3)
    lines.append(f'| {claim} | {rows[0][0]} | '
                 + ' | '.join(f'{v:.3g}' for v in values)
                 + f' | {mean} | {spread} | {verdict} |')
    details += [f'- {claim}, seed {s}: {r[3]}' for s, r in zip(seeds, rows)
                if r]
  return '\n'.join(lines + [''] + details)


# launch.py beside this package (the checkout's, or the installed cgjax's):
# --run works from any directory.
LAUNCH = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'launch.py')


def run_sweeps(seeds, workdir) -> list[str]:
  dirs = []
  for seed in seeds:
    sweep_dir = os.path.join(workdir, f'seed{seed}')
    subprocess.run([sys.executable, LAUNCH, '--config',
                    f'mnist_mlp.py:seed={seed}', '--sweep',
                    '--workdir', sweep_dir], check=True)
    dirs.append(sweep_dir)
  return dirs


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('paths', nargs='*', help='one noise sweep dir per seed')
  parser.add_argument('--run', action='store_true',
                      help='run the sweeps (one per --seeds) first')
  parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
  parser.add_argument('--workdir', default='runs/claims')
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  paths = run_sweeps(args.seeds, args.workdir) if args.run else args.paths
  if not paths:
    parser.error('give sweep dirs, or --run')
  try:
    text = table([finished(p) for p in paths])
  except ValueError as err:
    raise SystemExit(f'error: {err}') from None
  runs_lib.write_text(args.out or (args.workdir if args.run else paths[0]),
                      'claims.md', text)


def finished(sweep_dir):
  """The sweep's runs whose status is done (the others are named)."""
  runs = runs_lib.find([sweep_dir])
  unfinished = [r.workdir for r in runs
                if workdir_lib.read_status(r.workdir) != 'done']
  if unfinished:
    print(f'left out, not finished: {", ".join(unfinished)}')
  return [r for r in runs if r.workdir not in unfinished]


if __name__ == '__main__':
  main()
