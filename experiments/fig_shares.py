"""Which examples drive the loss down: f_p and f_c over training, with the
permuted null model; one panel per setting.

    python -m experiments.fig_shares SWEEP_DIR --out plots/

f_p and f_c are the shares of a step's first-order loss decrease due to the
pristine and the corrupt examples of the batch (the `loss_shares`
measurement; f_p + f_c = 1). Solid: the real designation; dotted: the null
model with pristine / corrupt randomly permuted within the batch, whose f_p
is on average the pristine fraction (black dash-dot). The CG paper's finding:
early in training f_p is above the null (the pristine examples' gradients
agree), later the corrupt examples take over. Each seed's curves are running
medians of 5 probes; seeds: mean line and min-max band; shaded: from where
the noisy labels are 90% fitted on, the shares split a loss decrease near
zero and swing.
"""
from cgjax import runs as runs_api

from . import runs as runs_lib

# Its heading in the report (experiments.report).
TITLE = 'Shares of the loss decrease: pristine vs corrupt'

CURVES = {'f_p': ('f_p (pristine)', dict(color='C0')),
          'f_c': ('f_c (corrupt)', dict(color='C1')),
          'null_f_p': ('null f_p', dict(color='C0', ls=':')),
          'null_f_c': ('null f_c', dict(color='C1', ls=':')),
          # Black dash-dot: gray dashes could not be told from the dotted null.
          'pristine_frac': ('pristine fraction', dict(color='k', ls='-.',
                                                      lw=0.8))}
# Probes per running median: past memorization the loss decrease is near 0
# and its shares, ratios of near-zero sums, swung -0.25..1.25 probe to probe
# (conv study, noise 0.5, steps 300-2,000).
SMOOTH = 5
# The noisy-label train accuracy at which the corrupt labels count as
# memorized: the step is marked, the shares after it are of a tiny decrease.
MEMORIZED = 0.9


def _no_shares(run) -> str:
  """Why a run logged no shares: the known cause."""
  if run.noise == 0:
    return 'noise 0: every example is pristine (f_p = 1), nothing to split'
  if run.noise == 1:
    return 'noise 1: every example is corrupt (f_c = 1), nothing to split'
  return 'no step logged its shares (a batch of one kind only)'


def memorized_at(members) -> int | None:
  """The first step where the seeds' mean noisy-label train accuracy reaches
  MEMORIZED, or None."""
  series = runs_lib.metric_series(members, 'evaluation',
                                  'noisy_acc_vs_noisy_label')
  series = [s for s in series if any(v == v for v in s[1])]
  if not series:
    return None
  steps, values = runs_lib.common_steps(series)
  reached = [t for t, v in zip(steps, values.mean(0)) if v >= MEMORIZED]
  return reached[0] if reached else None


def plot(runs, out_dir):
  if not runs_lib.measuring(runs, 'loss_shares', 'shares'):
    return None
  groups = runs_lib.settings(runs)
  fig, axes = runs_lib.panels(len(groups), width=4.0, sharey=True)
  for ax, (label, members) in zip(axes, groups):
    runs_lib.title(ax, runs_lib.setting_title(label, members))
    drawn = False
    for key, (word, style) in CURVES.items():
      series = [(steps, runs_api.running_median(values, SMOOTH))
                for steps, values in runs_lib.metric_series(
                    members, 'loss_shares', key)]
      drawn |= runs_lib.mean_and_spread(ax, series, label=word, **style)
    if not drawn:
      runs_lib.note(ax, _no_shares(members[0]))
      continue
    step = memorized_at(members)
    ax.set(xlabel='step')
    runs_lib.step_axis(ax)
    if step is not None:  # shaded to the end (a patch: the legend's too)
      ax.axvspan(step, ax.get_xlim()[1], color='0.85', lw=0,
                 label=f'noisy labels >= {MEMORIZED:.0%} fitted: shares of a '
                 'tiny decrease')
  runs_lib.ylabel(axes, 'share of the loss decrease')
  runs_lib.legend_once(fig, axes)
  return runs_lib.save(fig, out_dir, 'shares')


if __name__ == '__main__':
  runs_lib.main(plot, __doc__)
