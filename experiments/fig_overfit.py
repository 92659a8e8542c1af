"""Adjusted overfit and test accuracy at the end of training, per setting
(e.g. the aggregators of a winsorize / M3 sweep).

    python -m experiments.fig_overfit SWEEP_DIR --out plots/

Adjusted overfit (the CG paper's) = train_acc - [rate / K + (1 - rate) *
test_acc]: how far training accuracy exceeds what generalization explains;
0 means no memorization. Bars: mean over seeds; whiskers: lowest and highest
seed; dots: the seeds. Settings are labeled by the config fields that differ
between the runs (a sweep's overrides).
"""
import numpy as np

from experiments import runs as runs_lib

PANELS = {'adjusted_overfit': 'adjusted overfit',
          'test_acc': 'test accuracy',
          'noisy_acc_vs_noisy_label': 'train acc, noisy (noisy label)'}


def plot(runs, out_dir):
  groups = runs_lib.settings(runs)
  fig, axes = runs_lib.panels(len(PANELS), width=max(3.6, 0.9 * len(groups)),
                              height=3.8)
  for ax, (key, title) in zip(axes, PANELS.items()):
    for i, (_, members) in enumerate(groups):
      finals = [r.final(f'{r.measurement("evaluation")}/{key}')
                for r in members if r.measurement('evaluation')]
      finals = np.array([v for v in finals if v == v])
      if not len(finals):
        continue
      ax.bar(i, finals.mean(), color=f'C{i % 10}', alpha=0.6)
      ax.errorbar(i, finals.mean(), color='k', capsize=3,
                  yerr=[[finals.mean() - finals.min()],
                        [finals.max() - finals.mean()]])
      ax.plot([i] * len(finals), finals, 'k.', ms=4)
    ax.set_xticks(range(len(groups)), [label for label, _ in groups],
                  rotation=35, ha='right', fontsize=7)
    ax.set_title(title)
    ax.axhline(0, color='gray', lw=0.8)
  return runs_lib.save(fig, out_dir, 'overfit')


if __name__ == '__main__':
  runs_lib.main(plot, __doc__)
