"""m-coherence next to the metrics it is compared with, over training.

    python -m experiments.fig_metrics SWEEP_DIR --out plots/

Rows: alpha (= m-coherence / m), average pairwise cosine, cosine stiffness
(same class, different class), GSNR and gradient diversity (= 1 /
m-coherence); columns: noise levels; lines: clean / noisy / test probes.
"""
from . import runs as runs_lib

METRICS = {'alpha': 'alpha = m-coh / m', 'avg_cosine': 'avg pairwise cosine',
           'stiffness/cos_same_class': 'cos stiffness, same class',
           'stiffness/cos_diff_class': 'cos stiffness, diff. class',
           'gsnr': 'GSNR (mean over params)',
           'gradient_diversity': 'gradient diversity'}
LOG_Y = ('alpha', 'gsnr', 'gradient_diversity')


def plot(runs, out_dir):
  if not runs_lib.measuring(runs, 'coherence', 'metrics'):
    return None
  fig, axes = runs_lib.plt.subplots(
      len(METRICS), len(runs), figsize=(3.4 * len(runs), 2.3 * len(METRICS)),
      squeeze=False, sharex=True)
  for row, (metric, title) in enumerate(METRICS.items()):
    for ax, run in zip(axes[row], runs):
      drawn = False
      for probe, style in runs_lib.PROBE_STYLE.items():
        key = f'probe/{probe}/{metric}'
        if key in run.series:
          steps, values = run.series[key]
          # A sparse series (probe.all_every) gets markers: its few points
          # are measurements, the lines between them are not.
          marker = {'marker': 'o', 'markersize': 3} if len(steps) <= 12 else {}
          ax.plot(steps, values, label=probe, **style, **marker)
          drawn = True
      if row == 0:
        runs_lib.title(ax, run.label)
      if ax is axes[row][0]:
        ax.set_ylabel(title, fontsize=8)
      if not drawn:  # statistics='norms' measures m-coherence only
        runs_lib.note(ax, "not measured: probe statistics='norms' "
                      "('all' adds it)")
        continue
      runs_lib.step_axis(ax)
      if metric in LOG_Y:
        ax.set_yscale('log')
  for ax in axes[-1]:
    ax.set_xlabel('step')
  runs_lib.legend_once(fig, axes.ravel())
  return runs_lib.save(fig, out_dir, 'metrics')


if __name__ == '__main__':
  runs_lib.main(plot, __doc__)
