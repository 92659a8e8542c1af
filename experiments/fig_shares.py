"""Which examples drive the loss down: f_p and f_c over training, with the
permuted null model; one panel per setting.

    python -m experiments.fig_shares SWEEP_DIR --out plots/

f_p and f_c are the shares of a step's first-order loss decrease due to the
pristine and the corrupt examples of the batch (the `loss_shares`
measurement; f_p + f_c = 1). Solid: the real designation; dotted: the null
model with pristine / corrupt randomly permuted within the batch, whose f_p
is on average the pristine fraction (gray). The CG paper's finding: early in
training f_p is above the null (the pristine examples' gradients agree),
later the corrupt examples take over. Seeds: mean line and min-max band.
"""
from . import runs as runs_lib

# Its heading in the report (experiments.report).
TITLE = 'Shares of the loss decrease: pristine vs corrupt'

CURVES = {'f_p': ('f_p (pristine)', dict(color='C0')),
          'f_c': ('f_c (corrupt)', dict(color='C1')),
          'null_f_p': ('null f_p', dict(color='C0', ls=':')),
          'null_f_c': ('null f_c', dict(color='C1', ls=':')),
          'pristine_frac': ('pristine fraction', dict(color='gray', ls='--',
                                                      lw=0.8))}


def plot(runs, out_dir):
  if not runs_lib.measuring(runs, 'loss_shares', 'shares'):
    return None
  groups = runs_lib.settings(runs)
  fig, axes = runs_lib.panels(len(groups), width=4.0, sharey=True)
  for ax, (label, members) in zip(axes, groups):
    runs_lib.title(ax, runs_lib.setting_title(label, members))
    name = members[0].measurement('loss_shares')
    drawn = False
    for key, (word, style) in CURVES.items():
      drawn |= runs_lib.mean_and_spread(
          ax, runs_lib.metric_series(members, 'loss_shares', key), label=word,
          **style)
    if not drawn:
      runs_lib.note(ax, 'no shares: the batches hold only pristine or only '
                    'corrupt examples,\nor no loss_shares measurement')
      continue
    ax.set(xlabel='step')
    runs_lib.step_axis(ax)
  runs_lib.ylabel(axes, 'share of the loss decrease')
  runs_lib.legend_once(fig, axes)
  return runs_lib.save(fig, out_dir, 'shares')


if __name__ == '__main__':
  runs_lib.main(plot, __doc__)
