"""Adjusted overfit and test accuracy at the end of training, per setting
(e.g. the aggregators of a winsorize / M3 sweep).

    python -m experiments.fig_overfit SWEEP_DIR --out plots/

Adjusted overfit (the CG paper's) = train_acc - [rate / K + (1 - rate) *
test_acc]: how far training accuracy exceeds what generalization explains;
0 means no memorization. Bars: mean over seeds; whiskers (with two seeds or
more): lowest and highest seed; dots: the seeds. Settings are labeled by
their sweep overrides (or the config fields that differ between the runs).
Drawn for two settings or more (one setting's bars would repeat the
report's table).
"""
import numpy as np

from . import runs as runs_lib

# Its heading in the report (experiments.report).
TITLE = 'Adjusted overfit per setting'

PANELS = {'adjusted_overfit': 'adjusted overfit',
          'test_acc': 'test accuracy',
          'noisy_acc_vs_noisy_label': 'train acc, noisy (noisy label)'}


def plot(runs, out_dir):
  groups = runs_lib.settings(runs)
  if len(groups) < 2:  # one bar a panel: the report's table has the values
    print('fig_overfit: not drawn, one setting (its values are in the table)')
    return None
  colors = runs_lib.setting_colors(len(groups))
  fig, axes = runs_lib.panels(len(PANELS), width=3.4,
                              height=1.2 + 0.35 * len(groups), sharey=True)
  for ax, (key, title) in zip(axes, PANELS.items()):
    for i, (_, members) in enumerate(groups):
      finals = [r.final(r.key('evaluation', key)) for r in members]
      finals = np.array([v for v in finals if v == v])
      if not len(finals):
        continue
      ax.barh(i, finals.mean(), color=colors[i], alpha=0.7)
      if len({r.config['seed'] for r in members}) > 1:  # a spread of seeds
        ax.errorbar(finals.mean(), i, color='k', capsize=3,
                    xerr=[[finals.mean() - finals.min()],
                          [finals.max() - finals.mean()]])
      ax.plot(finals, [i] * len(finals), 'k.', ms=4)
    ax.set_title(title, fontsize=10)
    ax.axvline(0, color='gray', lw=0.8)
  axes[0].set_yticks(range(len(groups)), [label for label, _ in groups],
                     fontsize=8)
  axes[0].invert_yaxis()  # the first setting on top
  return runs_lib.save(fig, out_dir, 'overfit')


if __name__ == '__main__':
  runs_lib.main(plot, __doc__)
