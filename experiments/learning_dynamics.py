"""Coherent Gradients' learning-dynamics findings as statistics over seeds.

    python -m experiments.learning_dynamics SWEEP_DIR_OR_WORKDIRS... \
        [--early 40] [--out DIR]

Per setting (runs grouped by the config fields that differ, seeds
together), from each run's learning-times file and its loss-shares metrics:

  median first-correct step of clean examples and of noisy examples
    (against their noisy label; never-learned examples count as later than
    every step), and the same for the step from which they stayed correct;
  f_p, f_c, null f_p, null f_c and the pristine fraction: medians over the
    measured steps of a window (early: steps <= --early, default one epoch;
    middle: up to 10 x --early; late: the last half of training); and
    f_p - null f_p, the pristine
    examples' share of the loss decrease beyond what their number explains.

Each statistic: the value per seed, then mean and (max - min) / 2 over
seeds. Printed, and written as learning_dynamics.md in --out (default the
first path).
"""
import argparse

import numpy as np

from . import fig_learning
from . import runs as runs_lib

NEVER = np.inf


def median_step(times, rows, column) -> float:
  """nan where there are no such examples (noisy ones at noise 0)."""
  steps = times[column][rows].astype(float)
  if not steps.size:
    return float('nan')
  return float(np.median(np.where(steps < 0, NEVER, steps)))


def window_median(run, name, lo, hi) -> float:
  steps, values = run.series.get(name, ((), ()))
  inside = [v for s, v in zip(steps, values) if lo <= s <= hi]
  return float(np.median(inside)) if inside else float('nan')


def statistics(run, early: int) -> dict:
  """{statistic: value} of one run."""
  out = {}
  times = fig_learning.load_times(run)
  if times is not None:
    noisy = times['is_noisy']
    for kind in ('first_correct', 'stays_correct'):
      out[f'median {kind} step, clean'] = median_step(times, ~noisy, kind)
      out[f'median {kind} step, noisy'] = median_step(times, noisy, kind)
  name = run.measurement('loss_shares')
  if name:
    num_steps = run.config['num_steps']
    windows = {'early': (0, early), 'middle': (early + 1, 10 * early),
               'late': (num_steps // 2, num_steps)}
    for window, (lo, hi) in windows.items():
      get = lambda key: window_median(run, f'{name}/{key}', lo, hi)
      for key in ('f_p', 'f_c', 'null_f_p', 'null_f_c', 'pristine_frac'):
        out[f'{key}, {window} (steps {lo}-{hi})'] = get(key)
      excess = [p - n for p, n in zip(*(
          [v for s, v in zip(*run.series.get(f'{name}/{k}', ((), ())))
           if lo <= s <= hi] for k in ('f_p', 'null_f_p')))]
      out[f'f_p - null f_p, {window} (steps {lo}-{hi})'] = (
          float(np.median(excess)) if excess else float('nan'))
  return out


def table(runs, early: int) -> str:
  """A table per setting: each statistic per seed, mean and spread. A
  statistic that no run of the setting has (no noisy examples at noise 0:
  f_c and the noisy medians) is left out, and the table says so."""
  lines = []
  for label, members in runs_lib.settings(runs):
    per_seed = [statistics(r, early) for r in members]
    keys = list(dict.fromkeys(k for p in per_seed for k in p))
    columns = runs_lib.seed_columns(members)
    lines += [f'### {label}', '',
              '| statistic | ' + ' | '.join(columns)
              + ' | mean | spread (max-min)/2 |',
              '|---' * (len(columns) + 3) + '|']
    empty = []
    for key in keys:
      values = np.array([p.get(key, np.nan) for p in per_seed])
      if np.isnan(values).all():
        empty.append(key)
        continue
      mean, spread = runs_lib.over_seeds(values, members)
      lines.append(f'| {key} | ' + ' | '.join(
          '-' if np.isnan(v) else f'{v:.4g}' for v in values)
                   + f' | {mean} | {spread} |')
    if not keys:
      lines.append('| (no learning-times or loss-shares measurement) |'
                   + ' |' * (len(columns) + 2))
    if empty:
      lines += ['', f'Not measured in this setting: {", ".join(empty)}.']
    lines.append('')
  return '\n'.join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('paths', nargs='+', help='workdirs or sweep dirs')
  parser.add_argument('--early', type=int, default=40,
                      help='last step of the early window (default 40, one '
                      'epoch of the embedded MNIST)')
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  runs_lib.write_text(args.out or args.paths[0], 'learning_dynamics.md',
                      table(runs_lib.find(args.paths), args.early))


if __name__ == '__main__':
  main()
