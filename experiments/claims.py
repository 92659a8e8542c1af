"""The papers' small-scale findings as claims checked over seeds.

    python -m experiments.claims SWEEP_DIR [SWEEP_DIR ...] [--out DIR]
    python -m experiments.claims --run --seeds 0 1 2 --workdir runs/claims
    python -m experiments.claims --study conv --run --seeds 0 1 2 \
        --workdir runs/claims_conv

Reads noise sweeps of an embedded study (`configs/mnist_mlp.py --sweep`, or
the convolutional one, `configs/mnist_cnn.py --sweep`: --study conv, also
recognized by its runs' model), one sweep dir per seed (or, with --run, runs them first: one `launch.py
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

With --study conv (configs/mnist_cnn.py: noise 0, 0.5, 1), two more,
their statistics and thresholds fixed before the study's numbers were seen:

  L  layer-wise: convolutional layers more coherent than dense ones: at
     noise 0 (clean probe), per probe at steps >= 1, the first conv
     kernel's m-coherence / the largest of the dense kernels' (the hidden
     dense layer and the head); the median of that over the probes; holds
     if > 1 (the claim is an ordering, so no margin)
  T  early transient: m-coherence falls from near m at initialization: at
     noise 0 (clean probe), m-coherence at step 0 / its median over steps
     TRANSIENT (the rest of the first epoch); holds if >= 10 (a fall of an
     order of magnitude, the papers' "from near m to below 10")

alpha (= m-coherence / m) is given next to each m-coherence statistic.
"""
import argparse
import dataclasses
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
TRANSIENT = (10, 40)  # steps: after the transient, still in the 1st epoch


@dataclasses.dataclass(frozen=True)
class Study:
  """A noise sweep whose claims are checked: its config (run per seed by
  --run) and whether its model has conv layers (the layer-wise claim)."""
  config: str
  model: str  # the config's model.name: how a sweep's study is recognized
  layers: tuple = ()  # (first conv kernel, dense kernels...) for claim L
  transient: bool = False  # claim T


STUDIES = {
    'mlp': Study('mnist_mlp.py', 'mlp'),
    'conv': Study('mnist_cnn.py', 'cnn', transient=True,
                  layers=('conv0/kernel', 'dense/kernel', 'head/kernel')),
}


def probe(run, name, lo=0, hi=None):
  """(steps, m-coherence) of a probe set within [lo, hi]."""
  steps, values = run.series.get(run.key('coherence', f'{name}/m_coherence'),
                                ((), ()))
  keep = [(s, v) for s, v in zip(steps, values)
          if s >= lo and (hi is None or s <= hi)]
  return ([s for s, _ in keep], [v for _, v in keep])


def m_of(run):
  return run.measurement_config('coherence')['m']


def by_rate(runs):
  """{noise rate: run}; a sweep dir holds one seed, so one run per rate."""
  rates = {}
  for run in runs:
    other = rates.setdefault(round(run.noise, 6), run)
    if other is not run:
      raise ValueError(f'two runs at noise {run.noise:g} ({other.workdir}, '
                       f'{run.workdir}): give one sweep dir per seed')
  return rates


def study_of(sweep) -> Study:
  """The study whose model the sweep's runs train (default: the MLP's)."""
  names = {r.config.get('model', {}).get('name') for r in sweep}
  return next((s for s in STUDIES.values() if names == {s.model}),
              STUDIES['mlp'])


def claim_rows(sweep, study=None):
  """{claim: (statistic text, value, holds, details)} for one seed's
  sweep; the layer-wise and transient claims where its study (`study`, or
  the one its model says) has them."""
  study = study or study_of(sweep)
  rates = by_rate(sweep)
  rows = {}
  real, random = rates.get(0.0), rates.get(1.0)
  if real and random:
    peak_real = real.peak(real.key('coherence', 'clean/m_coherence'))[0]
    peak_random = random.peak(random.key('coherence', 'noisy/m_coherence'))[0]
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
  if real and study.layers:
    rows.update(_layer_claim(real, study.layers))
  if real and study.transient:
    steps, values = probe(real, 'clean')
    at = dict(zip(steps, values))
    later = probe(real, 'clean', *TRANSIENT)[1]
    if 0 in at and later:
      fall = at[0] / np.median(later)
      rows['T: early transient: m-coherence falls from near m'] = (
          f'm-coh at step 0 / median steps {TRANSIENT[0]}-{TRANSIENT[1]}, '
          'noise 0 (>= 10)', fall, fall >= 10,
          f'{at[0]:.1f} (alpha {at[0] / m_of(real):.3f}) -> '
          f'{np.median(later):.2f}')
  return rows


def _layer_claim(run, layers):
  """Claim L on the clean probe of `run`: first / largest of the rest."""
  first, *dense = layers
  series = [dict(zip(*run.series.get(
      run.key('coherence', f'clean/per_layer/{p}/m_coherence'), ((), ()))))
            for p in layers]
  steps = [s for s in series[0] if s >= 1 and all(s in d for d in series)]
  if not steps:
    return {}
  ratios = [series[0][s] / max(d[s] for d in series[1:]) for s in steps]
  value = float(np.median(ratios))
  medians = ', '.join(f'{p.split("/")[0]} {np.median([d[s] for s in steps]):.2f}'
                      for p, d in zip(layers, series))
  return {'L: conv layers more coherent than dense ones': (
      f'median over probes of m-coh {first} / max of {", ".join(dense)}, '
      'noise 0, steps >= 1 (> 1)', value, value > 1,
      f'median m-coh: {medians}')}


def table(sweeps, study=None) -> str:
  per_seed = [claim_rows(s, study) for s in sweeps]
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


def run_sweeps(seeds, workdir, study) -> list[str]:
  dirs = []
  for seed in seeds:
    sweep_dir = os.path.join(workdir, f'seed{seed}')
    subprocess.run([sys.executable, LAUNCH, '--config',
                    f'{study.config}:seed={seed}', '--sweep',
                    '--workdir', sweep_dir], check=True)
    dirs.append(sweep_dir)
  return dirs


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('paths', nargs='*', help='one noise sweep dir per seed')
  parser.add_argument('--run', action='store_true',
                      help='run the sweeps (one per --seeds) first')
  parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
  parser.add_argument('--study', choices=tuple(STUDIES), default=None,
                      help="the study's config (with --run; default mlp) "
                      'and claims (default: by the runs\' model)')
  parser.add_argument('--workdir', default='runs/claims')
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  study = STUDIES[args.study] if args.study else None
  paths = (run_sweeps(args.seeds, args.workdir, study or STUDIES['mlp'])
           if args.run else args.paths)
  if not paths:
    parser.error('give sweep dirs, or --run')
  try:
    text = table([finished(p) for p in paths], study)
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
