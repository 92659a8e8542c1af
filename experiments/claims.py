"""The papers' small-scale findings as claims checked over seeds, on rho.

    python -m experiments.claims SWEEP_DIR [SWEEP_DIR ...] [--out DIR]
    python -m experiments.claims --run --seeds 0 1 2 3 4 --workdir runs/claims
    python -m experiments.claims --study conv --run --seeds 0 1 2 3 4 \
        --workdir runs/claims_conv

Reads noise sweeps of an embedded study (`configs/mnist_mlp.py --sweep`, or
the convolutional one, `configs/mnist_cnn.py --sweep`: --study conv, also
recognized by its runs' model), one sweep dir per seed (or, with --run, runs
them first: one `launch.py --sweep` per seed, resuming what exists). Written
as claims.md (and printed) in --out (default the first path, or --workdir).

The statistics are on rho = (m-coherence - 1) / (m - 1), the m-invariant
part of m-coherence (docs/science.md): m-coherence ~ 1 + (m - 1) rho grows
with the probe's m, so thresholds on it at m = 256 say nothing of the
papers' samples of tens of thousands; rho compares across sizes. Each claim
has a statistic over a window of probes (never one probe), computed per
seed; the table gives it per seed, the mean, the spread ((max - min) / 2)
and a 95% t-interval of the per-seed values (seeds are independent runs; a
sign test of 5 seeds cannot reach 95% two-sided, a t-interval can). A claim
holds only where that interval clears its threshold; otherwise "not shown".
Thresholds and statistics were fixed here before the numbers were read.
The same statistic on m-coherence (at the probes' m) is the last column,
where there is one: it is what the papers plot, and small m pulls its
ratios toward 1.

Probes: the clean probe at noise 0, the noisy one at noise 1; "smoothed" =
running median of 5 consecutive probes (one unstable probe makes no peak).

  2  real vs random labels: peak smoothed rho at noise 0 / at noise 1; > 2
  3a random labels are coherent while memorized: at noise 1, median rho
     over the probes where the noisy-label train accuracy (interpolated
     between evaluations) is in [0.2, 0.9]; > 0, and on every seed the
     median of those probes' lower confidence bounds (rho_low) > 0 too
  3b ... and at least twice its level before memorization: that median
     minus twice the median rho over the probes at steps >= 1 before the
     accuracy first reaches 0.2; > 0 (a difference, not the ratio, which is
     undefined where the earlier median is 0 or below)
  4a partial noise: median over the probes at steps 1..EARLY of clean /
     noisy rho, the smallest over the rates in (0, 1); > 1
  4b median first-correct step of clean examples / that of noisy ones
     (learning times), the largest over the partial rates; < 1
  6  median over the loss-shares measurements at steps <= EPOCH of f_p -
     null f_p, the smallest over the partial rates; > 0

With --study conv (configs/mnist_cnn.py: noise 0, 0.5, 1), two more:

  L  conv layers more coherent than dense ones: at noise 0 (clean probe),
     per probe at steps >= 1, the first conv kernel's rho / the largest of
     the dense kernels' (hidden dense layer, head); median over probes; > 1
  T  early transient, coherence falls after initialization: at noise 0,
     rho at step 0 / its median over steps TRANSIENT (rest of epoch 1); > 10
"""
import argparse
import dataclasses
import os
import subprocess
import sys

import numpy as np
import scipy.stats

from cgjax import workdir as workdir_lib
from . import fig_learning
from . import runs as runs_lib

EARLY = 400   # steps: the clean examples are fitted by then (10 epochs)
EPOCH = 40    # steps of one epoch of the embedded MNIST at batch 100
TRANSIENT = (10, 40)  # steps: after the transient, still in the 1st epoch
MEMORIZING = (0.2, 0.9)  # noisy-label train accuracy: claim 3's window
CONFIDENCE = 0.95  # of the interval over seeds


@dataclasses.dataclass(frozen=True)
class Claim:
  title: str
  statistic: str
  threshold: float
  above: bool = True  # holds if the statistic is above the threshold


CLAIMS = {
    '2': Claim('real-label peak rho far above random-label peak',
               'peak smoothed rho noise 0 / noise 1', 2),
    '3a': Claim('random labels: rho above 0 while memorized',
                'median rho, noise 1, noisy-label acc in [0.2, 0.9]', 0),
    '3b': Claim('random labels: rho while memorized at least twice its '
                'earlier level',
                'that median - 2 x median before acc reaches 0.2', 0),
    '4a': Claim('clean more coherent than noisy early',
                f'min over rates of median clean/noisy rho, steps 1-{EARLY}',
                1),
    '4b': Claim('clean examples fitted before noisy ones',
                'max over rates of median first-correct step clean / noisy',
                1, above=False),
    '6': Claim('f_p above its permuted null early',
               f'min over rates of median f_p - null f_p, steps 0-{EPOCH}', 0),
    'L': Claim('conv layers more coherent than dense ones',
               'median over probes of rho conv0 / max of dense, head, '
               'noise 0, steps >= 1', 1),
    'T': Claim('early transient: rho falls after initialization',
               f'rho at step 0 / median steps {TRANSIENT[0]}-{TRANSIENT[1]}, '
               'noise 0', 10),
}


@dataclasses.dataclass(frozen=True)
class Value:
  """One seed's statistic: its value, what it came from, the same statistic
  on m-coherence (nan: none), and a per-seed condition (claim 3a's bound)."""
  value: float
  details: str
  m_coherence: float = float('nan')
  condition: bool = True


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


def probe(run, name, lo=0, hi=None, metric='rho'):
  """(steps, values) of a probe set's `metric` within [lo, hi]."""
  steps, values = run.series.get(run.key('coherence', f'{name}/{metric}'),
                                ((), ()))
  keep = [(s, v) for s, v in zip(steps, values)
          if s >= lo and (hi is None or s <= hi)]
  return ([s for s, _ in keep], [v for _, v in keep])


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


def _ratio(a, b):
  return a / b if b > 0 else float('nan')


def _peaks(real, random, metric):
  top = lambda run, name: run.peak(run.key('coherence', f'{name}/{metric}'))[0]
  return top(real, 'clean'), top(random, 'noisy')


def _median_ratio(run, sets, lo, hi, metric):
  """Median over common probe steps of sets[0] / sets[1]."""
  a, b = (dict(zip(*probe(run, s, lo, hi, metric))) for s in sets)
  return float(np.median([v / b[s] for s, v in a.items() if s in b])
               if set(a) & set(b) else np.nan)


def _memorizing(run):
  """{'pre': steps >= 1 before the noisy-label accuracy first reaches
  MEMORIZING[0], 'during': steps where it is inside MEMORIZING} among the
  noisy probe's steps, the accuracy interpolated between evaluations."""
  acc_steps, acc = run.series.get(
      run.key('evaluation', 'noisy_acc_vs_noisy_label'), ((), ()))
  steps = np.asarray(probe(run, 'noisy')[0])
  if not len(acc_steps) or not len(steps):
    return None
  at = np.interp(steps, acc_steps, acc)
  reached = steps[at >= MEMORIZING[0]]
  first = reached[0] if len(reached) else np.inf
  return {'pre': set(steps[(steps >= 1) & (steps < first)].tolist()),
          'during': set(steps[(at >= MEMORIZING[0])
                              & (at <= MEMORIZING[1])].tolist())}


def _claim3(random):
  windows = _memorizing(random)
  if not windows or not windows['during']:
    return {}
  pick = lambda metric, which: [v for s, v in zip(*probe(random, 'noisy',
                                                         metric=metric))
                                if s in windows[which]]
  during = float(np.median(pick('rho', 'during')))
  bound = float(np.median(pick('rho_low', 'during')))
  mc = float(np.median(pick('m_coherence', 'during')))
  rows = {'3a': Value(during, f'{len(windows["during"])} probes, median '
                      f'rho {during:.4f}, median lower bound {bound:.4f}',
                      mc, condition=bound > 0)}
  if windows['pre']:
    before = float(np.median(pick('rho', 'pre')))
    rows['3b'] = Value(during - 2 * before, f'{during:.4f} while memorized, '
                       f'{before:.4f} before ({len(windows["pre"])} probes)',
                       mc - 2 * float(np.median(pick('m_coherence', 'pre'))))
  return rows


def claim_rows(sweep, study=None) -> dict[str, Value]:
  """{claim key: Value} for one seed's sweep; the layer-wise and transient
  claims where its study (`study`, or the one its model says) has them."""
  study = study or study_of(sweep)
  rates = by_rate(sweep)
  rows = {}
  real, random = rates.get(0.0), rates.get(1.0)
  if real and random:
    (a, b), (ma, mb) = _peaks(real, random, 'rho'), _peaks(
        real, random, 'm_coherence')
    rows['2'] = Value(_ratio(a, b), f'{a:.4f} / {b:.4f} (m-coh {ma:.2f} / '
                      f'{mb:.2f})', _ratio(ma, mb))
  if random:
    rows.update(_claim3(random))
  partial = [r for rate, r in sorted(rates.items()) if 0 < rate < 1]
  if partial:
    pair = ('clean', 'noisy')
    ratios = [_median_ratio(r, pair, 1, EARLY, 'rho') for r in partial]
    mc = [_median_ratio(r, pair, 1, EARLY, 'm_coherence') for r in partial]
    rows['4a'] = Value(min(ratios), ', '.join(
        f'{r.noise:g}: {x:.2f}' for r, x in zip(partial, ratios)), min(mc))
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
      rows['4b'] = Value(max(c / n for _, c, n in learned), ', '.join(
          f'{rate:g}: {c:g} vs {n:g}' for rate, c, n in learned))
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
      rows['6'] = Value(min(x for _, x in excess), ', '.join(
          f'{rate:g}: {x:+.3f}' for rate, x in excess))
  if real and study.layers:
    rows.update(_layer_claim(real, study.layers))
  if real and study.transient:
    rows.update(_transient_claim(real))
  return rows


def _transient_claim(run):
  values = {}
  for metric in ('rho', 'm_coherence'):
    at = dict(zip(*probe(run, 'clean', metric=metric)))
    later = probe(run, 'clean', *TRANSIENT, metric=metric)[1]
    if 0 not in at or not later:
      return {}
    values[metric] = (at[0], float(np.median(later)))
  (r0, r1), (m0, m1) = values['rho'], values['m_coherence']
  return {'T': Value(_ratio(r0, r1), f'rho {r0:.4f} -> {r1:.4f} (m-coh '
                     f'{m0:.2f} -> {m1:.2f})', _ratio(m0, m1))}


def _layer_claim(run, layers):
  """Claim L on the clean probe of `run`: first / largest of the rest."""
  out = {}
  for metric in ('rho', 'm_coherence'):
    series = [dict(zip(*probe(run, 'clean', metric=f'per_layer/{p}/{metric}')))
              for p in layers]
    steps = [s for s in series[0] if s >= 1 and all(s in d for d in series)]
    if not steps:
      return {}
    ratios = [series[0][s] / max(d[s] for d in series[1:]) for s in steps]
    out[metric] = (float(np.median(ratios)), ', '.join(
        f'{p.split("/")[0]} {np.median([d[s] for s in steps]):.4g}'
        for p, d in zip(layers, series)))
  return {'L': Value(out['rho'][0], f'median rho: {out["rho"][1]}',
                     out['m_coherence'][0])}


def interval(values, confidence=CONFIDENCE) -> tuple[float, float]:
  """The t-interval of the mean of per-seed values (nan: fewer than 2)."""
  values = np.asarray(values, float)
  values = values[np.isfinite(values)]
  if len(values) < 2:
    return float('nan'), float('nan')
  half = (scipy.stats.t.ppf((1 + confidence) / 2, len(values) - 1)
          * values.std(ddof=1) / np.sqrt(len(values)))
  return float(values.mean() - half), float(values.mean() + half)


def verdict(claim: Claim, values, conditions) -> str:
  """'yes' where the interval over seeds clears the threshold (and every
  seed meets its condition), else 'not shown' and why."""
  low, high = interval(values)
  if np.isnan(low):
    return 'not shown (one seed: no interval)'
  clears = low > claim.threshold if claim.above else high < claim.threshold
  if not clears:
    return 'not shown (interval reaches the threshold)'
  if not all(conditions):
    return (f'not shown (lower bound <= 0 on {conditions.count(False)} '
            'seed(s))')
  return 'yes'


def table(sweeps, study=None) -> str:
  per_seed = [claim_rows(s, study) for s in sweeps]
  firsts = [s[0] for s in sweeps]  # one run per sweep stands for its seed
  seeds = [r.config['seed'] for r in firsts]
  columns = runs_lib.seed_columns(firsts)
  lines = ['| claim | statistic on rho (threshold) | ' + ' | '.join(columns)
           + ' | mean | spread | 95% interval | holds | same on m-coh (mean)'
           ' |', '|---' * (len(seeds) + 7) + '|']
  details = []
  for key, claim in CLAIMS.items():
    rows = [p.get(key) for p in per_seed]
    if not any(rows):
      continue
    values = np.array([r.value if r else np.nan for r in rows])
    low, high = interval(values)
    mean, spread = runs_lib.over_seeds(values, firsts, digits=3)
    m_coh = np.array([r.m_coherence if r else np.nan for r in rows])
    sign = '>' if claim.above else '<'
    lines.append(
        f'| {key}: {claim.title} | {claim.statistic} ({sign} '
        f'{claim.threshold:g}) | ' + ' | '.join(f'{v:.3g}' for v in values)
        + f' | {mean} | {spread} | '
        + (f'[{low:#.3g}, {high:#.3g}]' if low == low else '-') + ' | '
        + verdict(claim, values, [r.condition for r in rows if r]) + ' | '
        + (f'{np.nanmean(m_coh):.3g}' if np.isfinite(m_coh).any() else '-')
        + ' |')
    details += [f'- {key}, seed {s}: {r.details}' for s, r in zip(seeds, rows)
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
