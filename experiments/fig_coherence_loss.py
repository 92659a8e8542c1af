"""m-coherence against the probe set's own loss, one panel per setting.

    python -m experiments.fig_coherence_loss SWEEP_DIR --out plots/

Each probe measures the mean loss of its m examples with the same params
as their m-coherence (`probe/{set}/mean_loss`), so a run traces a path from
the initial loss (right) down as training fits the examples: where along
the way the gradients agree, without the step axis's dependence on the lr
and batch. Clean (solid), noisy (dashed) and test (dotted) probe sets; the
path is the seeds' geometric mean at each probe, smoothed by a running
median of 5 probes, with a dot at the first probe and arrows in the
direction of training; log axes, the gray line the orthogonal baseline 1.
"""
import numpy as np

from cgjax import runs as runs_api

from . import runs as runs_lib

# Its heading in the report (experiments.report).
TITLE = "m-coherence against the probe set's loss"


# Probes per running median of the path: unsmoothed, late probes (loss
# 1e-3..1e-1, m-coherence 1-3) ran back and forth into tangles (conv study).
SMOOTH = 5


def _path(members, probe):
  """(loss, m-coherence) of the seeds' geometric mean at the steps all have,
  each a running median of SMOOTH probes; None where no seed logged both."""
  logs = []
  for run in members:
    loss = run.series.get(run.key('coherence', f'{probe}/mean_loss'))
    mc = run.series.get(run.key('coherence', f'{probe}/m_coherence'))
    if loss and mc:  # logged together: the steps both have
      logs += [loss, mc]
  if not logs:
    return None
  _, values = runs_lib.common_steps(logs)
  values = np.log(np.maximum(values, 1e-12))
  mean = [np.exp(values[0::2].mean(0)), np.exp(values[1::2].mean(0))]
  return [runs_api.running_median(v, SMOOTH) for v in mean]


def plot(runs, out_dir):
  if not runs_lib.measuring(runs, 'coherence', 'coherence_loss'):
    return None
  groups = runs_lib.settings(runs)
  fig, axes = runs_lib.panels(len(groups), sharey=True)
  for ax, (label, members) in zip(axes, groups):
    runs_lib.title(ax, runs_lib.setting_title(label, members))
    drawn = False
    for probe, style in runs_lib.PROBE_STYLE.items():
      path = _path(members, probe)
      if path is None or not len(path[0]):
        continue
      x, y = path
      ax.plot(x, y, lw=1.2, label=probe, **style)
      ax.plot(x[:1], y[:1], 'o', ms=4, color=style['color'], label='_start',
              clip_on=False)
      for i in (len(x) // 3, 2 * len(x) // 3):  # the direction of training
        if 0 < i < len(x) - 1:
          ax.annotate('', (x[i + 1], y[i + 1]), (x[i], y[i]),
                      arrowprops=dict(arrowstyle='-|>', color=style['color'],
                                      lw=1.2, mutation_scale=12))
      drawn = True
    if not drawn:
      runs_lib.note(ax, 'no probe logged its loss')
      continue
    ax.axhline(1.0, color='gray', lw=0.8, label='_1')
    ax.set(xscale='log', yscale='log', xlabel='probe set mean loss')
  runs_lib.ylabel(axes, 'm-coherence')
  runs_lib.legend_once(fig, axes)
  return runs_lib.save(fig, out_dir, 'coherence_loss')


if __name__ == '__main__':
  runs_lib.main(plot, __doc__)
