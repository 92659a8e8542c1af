"""Accuracy over training: clean train, noisy train, test; one panel per noise.

    python -m experiments.fig_accuracy SWEEP_DIR --out plots/

Noisy examples are scored against their noisy (memorized) label (dashed) and
against their original label (dotted), as in the papers' memorization plots.
"""
from . import runs as runs_lib

CURVES = {'eval/clean_acc': ('train, clean examples', dict(ls='-', color='C0')),
          'eval/noisy_acc_vs_noisy_label': ('train, noisy (noisy label)',
                                            dict(ls='--', color='C1')),
          'eval/noisy_acc_vs_clean_label': ('train, noisy (true label)',
                                            dict(ls=':', color='C1')),
          'eval/test_acc': ('test', dict(ls='-.', color='C2'))}


def plot(runs, out_dir):
  fig, axes = runs_lib.panels(len(runs), sharey=True)
  for ax, run in zip(axes, runs):
    for key, (name, style) in CURVES.items():
      if key in run.series and any(v == v for v in run.series[key][1]):
        ax.plot(*run.series[key], label=name, **style)
    runs_lib.title(ax, run.label)
    ax.set(xlabel='step', ylim=(0, 1.02))
  axes[0].set_ylabel('accuracy')
  runs_lib.legend_once(fig, axes)
  return runs_lib.save(fig, out_dir, 'accuracy')


if __name__ == '__main__':
  runs_lib.main(plot, __doc__)
