"""Plots m-coherence and accuracy over training for one or more workdirs.

    python -m experiments.plot_runs runs/noise0 runs/noise1 --out plots/

Writes coherence.png/.pdf (m-coherence of each probe set vs step, log axes as
in the m-coherence paper; the dotted line is the orthogonal baseline 1) and
accuracy.png/.pdf (clean, noisy-vs-noisy-label, test accuracy vs step).
"""
import argparse
import collections
import json
import os

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from cgjax import workdir as workdir_lib

PROBE_STYLE = {'clean': '-', 'noisy': '--', 'test': ':'}
ACCURACY = {'eval/clean_acc': 'clean', 'eval/noisy_acc_vs_noisy_label':
            'noisy (vs noisy label)', 'eval/test_acc': 'test'}


def series(workdir) -> dict[str, tuple[list, list]]:
  out = collections.defaultdict(lambda: ([], []))
  for row in workdir_lib.read_metrics(workdir):
    out[row['name']][0].append(row['step'])
    out[row['name']][1].append(row['value'])
  return out


def label(workdir) -> str:
  with open(os.path.join(workdir, 'config.json')) as f:
    config = json.load(f)
  return f"noise={config['noise']['rate']:g}"


def plot(workdirs, out_dir):
  os.makedirs(out_dir, exist_ok=True)
  runs = [(label(w), series(w)) for w in workdirs]
  colors = plt.rcParams['axes.prop_cycle'].by_key()['color']

  fig, ax = plt.subplots(figsize=(7, 4.5))
  for color, (name, s) in zip(colors, runs):
    for probe, style in PROBE_STYLE.items():
      key = f'probe/{probe}/m_coherence'
      if key in s:
        steps, values = s[key]
        ax.plot([max(x, 1) for x in steps], values, style, color=color,
                label=f'{name}, {probe}')
  ax.axhline(1.0, color='gray', lw=0.8, ls=':')
  ax.set(xscale='log', yscale='log', xlabel='step (step 0 drawn at 1)',
         ylabel='m-coherence', title='m-coherence of per-example gradients')
  ax.legend(fontsize=7, ncol=2)
  _save(fig, out_dir, 'coherence')

  fig, axes = plt.subplots(1, len(ACCURACY), figsize=(12, 3.8), sharey=True)
  for ax, (key, title) in zip(axes, ACCURACY.items()):
    for color, (name, s) in zip(colors, runs):
      if key in s:
        ax.plot(*s[key], color=color, label=name)
    ax.set(title=title, xlabel='step', ylim=(0, 1.02))
  axes[0].set_ylabel('accuracy')
  axes[0].legend(fontsize=8)
  _save(fig, out_dir, 'accuracy')


def _save(fig, out_dir, name):
  fig.tight_layout()
  for ext in ('png', 'pdf'):
    fig.savefig(os.path.join(out_dir, f'{name}.{ext}'), dpi=120)
  plt.close(fig)
  print(f'wrote {os.path.join(out_dir, name)}.png/.pdf')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('workdirs', nargs='+')
  parser.add_argument('--out', default='plots')
  args = parser.parse_args()
  plot(args.workdirs, args.out)


if __name__ == '__main__':
  main()
