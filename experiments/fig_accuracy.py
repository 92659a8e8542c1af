"""Accuracy over training: clean train, noisy train, test; one panel per
setting.

    python -m experiments.fig_accuracy SWEEP_DIR --out plots/

Clean training examples (solid), noisy ones scored against their noisy
(memorized) label (dashed) and against their original label (dotted), as in
the papers' memorization plots, and the test set (dash-dot); seeds of a
setting as mean line and min-max band. With several settings, a last panel
has the test accuracy of every setting, one color each.
"""
from . import runs as runs_lib

# Its heading in the report (experiments.report).
TITLE = 'Accuracy on clean, noisy and test examples'

# Metrics of the evaluation measurement, whatever its name.
CURVES = {'clean_acc': ('train, clean examples', dict(ls='-', color='C0')),
          'noisy_acc_vs_noisy_label': ('train, noisy (noisy label)',
                                       dict(ls='--', color='C1')),
          'noisy_acc_vs_clean_label': ('train, noisy (true label)',
                                       dict(ls=':', color='C1')),
          'test_acc': ('test', dict(ls='-.', color='C2'))}


def plot(runs, out_dir):
  groups = runs_lib.settings(runs)
  fig, axes = runs_lib.panels(len(groups) + (len(groups) > 1), sharey=True)
  for ax, (label, members) in zip(axes, groups):
    for key, (name, style) in CURVES.items():
      series = [s for s in runs_lib.metric_series(members, 'evaluation', key)
                if any(v == v for v in s[1])]  # NaN: no such examples
      runs_lib.mean_and_spread(ax, series, label=name, **style)
    runs_lib.title(ax, runs_lib.setting_title(label, members))
    ax.set(xlabel='step', ylim=(0, 1.02))
    runs_lib.step_axis(ax)  # log with 0, as every other figure's
  if len(groups) > 1:
    if runs_lib.overlay(axes[-1], groups, 'evaluation', 'test_acc',
                        'test accuracy'):
      runs_lib.step_axis(axes[-1])
    else:
      runs_lib.note(axes[-1], 'fewer than two settings have a test accuracy')
  runs_lib.ylabel(axes, 'accuracy')
  runs_lib.legend_once(fig, axes[:len(groups)])
  return runs_lib.save(fig, out_dir, 'accuracy')


if __name__ == '__main__':
  runs_lib.main(plot, __doc__)
