"""m-coherence next to the metrics it is compared with, over training.

    python -m experiments.fig_metrics SWEEP_DIR --out plots/

Rows: alpha (= m-coherence / m), average pairwise cosine, cosine stiffness
(same class, different class), block gradient confusion (min over the
stiffness pairs of g_i . g_j: negative where two examples pull against each
other), GSNR and gradient diversity (= 1 / m-coherence); columns: settings
(seeds as mean line and min-max band; one setting: a grid of the metrics);
lines: clean / noisy / test probes; a series measured at a dozen steps or
fewer (`probe.all_every`) is drawn as its points (circle clean, square
noisy, triangle test), not joined across the log axis.
"""
from . import runs as runs_lib

# Its heading in the report (experiments.report).
TITLE = 'm-coherence and the metrics it is compared with'

METRICS = {'alpha': 'alpha = m-coh / m', 'avg_cosine': 'avg pairwise cosine',
           'stiffness/cos_same_class': 'cos stiffness, same class',
           'stiffness/cos_diff_class': 'cos stiffness, diff. class',
           'block_gradient_confusion': 'block gradient confusion\n'
                                       '(min g_i . g_j, block pairs)',
           'gsnr': 'GSNR (mean over params)',
           'gradient_diversity': 'gradient diversity'}
LOG_Y = ('alpha', 'gsnr', 'gradient_diversity')


def plot(runs, out_dir):
  if not runs_lib.measuring(runs, 'coherence', 'metrics'):
    return None
  groups = runs_lib.settings(runs)
  if len(groups) == 1:  # one setting: a grid of metrics, titled by metric
    # (a column of 7 panels was 362 x 1770 px, a strip beside a blank page)
    fig, flat = runs_lib.panels(len(METRICS), height=2.6)
    cells = [(ax, metric, groups[0]) for ax, metric in zip(flat, METRICS)]
  else:  # rows: metrics, columns: settings
    fig, axes = runs_lib.plt.subplots(
        len(METRICS), len(groups), figsize=(3.4 * len(groups),
                                            2.3 * len(METRICS)),
        squeeze=False, sharex=True)
    cells = [(ax, metric, group) for row, metric in zip(axes, METRICS)
             for ax, group in zip(row, groups)]
  for ax, metric, (label, members) in cells:
    drawn = False
    for probe, style in runs_lib.PROBE_STYLE.items():
      drawn |= runs_lib.mean_and_spread(ax, runs_lib.metric_series(
          members, 'coherence', f'{probe}/{metric}'), label=probe,
          **style)
    if len(groups) == 1:
      runs_lib.title(ax, METRICS[metric].replace('\n', ' '))
    else:
      if metric == next(iter(METRICS)):
        runs_lib.title(ax, runs_lib.setting_title(label, members))
      if ax.get_subplotspec().is_first_col():
        ax.set_ylabel(METRICS[metric], fontsize=8)
    if not drawn:  # statistics='norms' measures m-coherence only
      runs_lib.note(ax, "not measured: probe statistics='norms' "
                    "('all' adds it)")
      continue
    runs_lib.step_axis(ax)
    if metric in LOG_Y:
      ax.set_yscale('log')
    runs_lib.few_ticks(ax)
    if len(groups) == 1 or ax.get_subplotspec().is_last_row():
      ax.set_xlabel('step')
  if len(groups) == 1:
    fig.suptitle(runs_lib.setting_title(*groups[0]), fontsize=10)
  runs_lib.legend_once(fig, [ax for ax, _, _ in cells])
  return runs_lib.save(fig, out_dir, 'metrics')


if __name__ == '__main__':
  runs_lib.main(plot, __doc__)
