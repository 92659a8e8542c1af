"""The memorization study's table and plot: SGD vs winsorize(c) vs M3/RM3/RA3.

    python -m experiments.winsorize_study SWEEP_DIR [SWEEP_DIR ...] \
        [--out FIRST_SWEEP_DIR/study]

Per trial: final train accuracy on clean examples, on noisy examples against
their noisy labels (memorization) and against their true labels, and test
accuracy; printed and written as study.md, with study.png/.pdf showing the
same over training against examples seen (M3 trials use bigger batches).
Several sweep dirs (one per seed, e.g. `:seed=1`): each cell is the mean
+- (max - min) / 2 over the seeds, and the plot draws mean and band.
"""
import argparse
import os

import numpy as np

from . import runs as runs_lib

# Metrics of the evaluation measurement, whatever its name.
COLUMNS = {'clean_acc': 'train acc, clean',
           'noisy_acc_vs_noisy_label': 'train acc, noisy (noisy label)',
           'noisy_acc_vs_clean_label': 'train acc, noisy (true label)',
           'test_acc': 'test acc'}


def label(run) -> str:
  optim = run.config['optim']
  name = optim.get('aggregator', 'mean')
  if name == 'winsorize':
    return f"winsorize c={optim['winsorize_c']}"
  if name == 'm3':
    return f"m3 k={optim['m3_groups']}"
  return 'SGD (mean, c=0)' if name == 'mean' else name


def table(runs) -> str:
  groups = _groups(runs)
  seeds = max(len(members) for _, members in groups)
  lines = ['| trial | noise | ' + ' | '.join(COLUMNS.values()) + ' |',
           '|---' * (len(COLUMNS) + 2) + '|']
  for name, members in groups:
    cells = []
    for key in COLUMNS:
      values = np.array([r.final(r.key('evaluation', key)) for r in members])
      cells.append(f'{values.mean():.3f}' + (
          f' +- {(values.max() - values.min()) / 2:.3f}' if seeds > 1 else ''))
    lines.append(f'| {name} | {members[0].noise:g} | ' + ' | '.join(cells)
                 + ' |')
  if seeds > 1:
    lines.append(f'\nMean +- (max - min) / 2 over {seeds} seeds.')
  return '\n'.join(lines)


def _groups(runs):
  """(trial label, runs of its seeds), in sweep order."""
  groups = {}
  for run in runs:
    groups.setdefault(label(run), []).append(run)
  return list(groups.items())


def plot(runs, out_dir) -> str:
  fig, axes = runs_lib.panels(len(COLUMNS), width=3.8, sharey=True)
  for ax, (key, title) in zip(axes, COLUMNS.items()):
    for i, (name, members) in enumerate(_groups(runs)):
      series = [(r, r.series.get(r.key('evaluation', key), ((), ())))
                for r in members]
      seen = [([s * r.config['batch_size'] / 1000 for s in steps], values)
              for r, (steps, values) in series if steps]
      runs_lib.mean_and_spread(ax, seen, label=name, color=f'C{i}')
    ax.set(title=title, xlabel='examples seen (thousands)', ylim=(0, 1.02))
  axes[0].set_ylabel('accuracy')
  runs_lib.legend_once(fig, axes)
  return runs_lib.save(fig, out_dir, 'study')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('sweep_dirs', nargs='+', help='one per seed')
  parser.add_argument('--out', default='',
                      help='default: FIRST_SWEEP_DIR/study')
  args = parser.parse_args()
  out = args.out or os.path.join(args.sweep_dirs[0], 'study')
  runs = runs_lib.find(args.sweep_dirs)  # in sweep order
  runs_lib.write_text(out, 'study.md', table(runs))
  plot(runs, out)


if __name__ == '__main__':
  main()
