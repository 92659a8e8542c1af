"""m-coherence of the layers a config names (`measurements.probe.layers`):
the papers' first conv, an intermediate layer and the final dense layer.

    python -m experiments.fig_named_layers SWEEP_DIR [SWEEP_DIR ...] --out plots/

One panel per named layer and setting (seeds of a setting as mean and band);
clean (solid), noisy (dashed), test (dotted) and mixed ('train',
dash-dot) probes; log-log axes as in
the m-coherence paper, the step axis linear between 0 and 1 so that step 0
shows; gray line: the orthogonal baseline 1.
"""
import numpy as np

from . import runs as runs_lib

# Its heading in the report (experiments.report).
TITLE = 'm-coherence of the named layers (first conv, intermediate, final dense)'


def named_layers(runs) -> list[str]:
  layers = []
  for run in runs:
    for path in run.measurement_config('coherence').get('layers', ()):
      if path not in layers:
        layers.append(path)
  return layers


def plot(runs, out_dir):
  """The figure's PNG path; None (nothing drawn) when no run names layers."""
  if not runs_lib.measuring(runs, 'coherence', 'named layers'):
    return None
  layers = named_layers(runs)
  if not layers:
    print('no named layers in these runs (measurements.probe.layers is empty):'
          ' fig_layers has every layer group')
    return None
  settings = runs_lib.settings(runs)
  fig, axes = runs_lib.plt.subplots(
      len(layers), len(settings), figsize=(3.6 * len(settings),
                                           3.0 * len(layers)),
      squeeze=False, layout='constrained')
  for row, layer in enumerate(layers):
    for col, (label, members) in enumerate(settings):
      ax = axes[row][col]
      drawn = False
      for probe, style in runs_lib.PROBE_STYLE.items():
        series = [(steps, values) for steps, values in
                  runs_lib.metric_series(
                      members, 'coherence',
                      f'{probe}/per_layer/{layer}/m_coherence')
                  if np.isfinite(values).all()]
        drawn |= runs_lib.mean_and_spread(ax, series, label=probe, **style)
      runs_lib.title(ax, f'{runs_lib.setting_title(label, members)}: {layer}')
      if not drawn:
        runs_lib.note(ax, f'{layer}: not measured in these runs, or not '
                      'finite (a probe whose gradients are all zero)')
        continue
      ax.axhline(1.0, color='gray', lw=0.8, label='_1')
      ax.set(yscale='log', xlabel='step', ylabel='m-coherence')
      runs_lib.step_axis(ax)
  runs_lib.legend_once(fig, axes.ravel())
  return runs_lib.save(fig, out_dir, 'named_layers')


if __name__ == '__main__':
  runs_lib.main(plot, __doc__)
