"""The memorization study's table and plot: SGD vs winsorize(c) vs M3/RM3/RA3.

    python -m experiments.winsorize_study SWEEP_DIR --out SWEEP_DIR/study

Per trial: final train accuracy on clean examples, on noisy examples against
their noisy labels (memorization) and against their true labels, and test
accuracy; printed and written as study.md, with study.png/.pdf showing the
same over training against examples seen (M3 trials use bigger batches).
"""
import argparse
import os

from experiments import runs as runs_lib

COLUMNS = {'eval/clean_acc': 'train acc, clean',
           'eval/noisy_acc_vs_noisy_label': 'train acc, noisy (noisy label)',
           'eval/noisy_acc_vs_clean_label': 'train acc, noisy (true label)',
           'eval/test_acc': 'test acc'}


def label(run) -> str:
  optim = run.config['optim']
  name = optim.get('aggregator', 'mean')
  if name == 'winsorize':
    return f"winsorize c={optim['winsorize_c']}"
  if name == 'm3':
    return f"m3 k={optim['m3_groups']}"
  return 'SGD (mean, c=0)' if name == 'mean' else name


def table(runs) -> str:
  lines = ['| trial | noise | ' + ' | '.join(COLUMNS.values()) + ' |',
           '|---' * (len(COLUMNS) + 2) + '|']
  for run in runs:
    cells = [f'{run.final(k):.3f}' for k in COLUMNS]
    lines.append(f'| {label(run)} | {run.noise:g} | ' + ' | '.join(cells)
                 + ' |')
  return '\n'.join(lines)


def plot(runs, out_dir) -> str:
  fig, axes = runs_lib.panels(len(COLUMNS), width=3.8, sharey=True)
  for ax, (key, title) in zip(axes, COLUMNS.items()):
    for i, run in enumerate(runs):
      if key in run.series:
        steps, values = run.series[key]
        seen = [s * run.config['batch_size'] / 1000 for s in steps]
        ax.plot(seen, values, color=f'C{i}', label=label(run))
    ax.set(title=title, xlabel='examples seen (thousands)', ylim=(0, 1.02))
  axes[0].set_ylabel('accuracy')
  runs_lib.legend_once(fig, axes)
  return runs_lib.save(fig, out_dir, 'study')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('sweep_dir')
  parser.add_argument('--out', default='', help='default: SWEEP_DIR/study')
  args = parser.parse_args()
  out = args.out or os.path.join(args.sweep_dir, 'study')
  runs = runs_lib.find([args.sweep_dir])  # in sweep order
  runs_lib.write_text(out, 'study.md', table(runs))
  plot(runs, out)


if __name__ == '__main__':
  main()
