"""Per-layer m-coherence over training as heatmaps (rows: layer groups).

    python -m experiments.fig_layers SWEEP_DIR --out plots/

One row of panels per probe set (clean, noisy), one column per setting;
colour is log10 m-coherence of each layer group (the model's `layer_group`,
e.g. ResNet stages) at each probe step (the mean over a setting's seeds),
input side at the top: red above m-coherence 1, blue below it; steps on a
log axis that still shows step 0.
"""
import matplotlib
import numpy as np

from . import runs as runs_lib

# Its heading in the report (experiments.report).
TITLE = 'Per-layer-group m-coherence'


def _matrix(members, probe):
  """(groups, steps, log10 m-coherence [group, step]) of one probe set,
  averaged over the seeds at the steps all of them have; Nones if none
  measured it."""
  run = members[0]
  prefix = run.key('coherence', f'{probe}/per_group/')
  groups = [k[len(prefix):-len('/m_coherence')] for k in run.series
            if k.startswith(prefix) and k.endswith('/m_coherence')]
  if not groups:
    return None, None, None
  series = [s for g in groups for s in runs_lib.metric_series(
      members, 'coherence', f'{probe}/per_group/{g}/m_coherence')]
  steps, values = runs_lib.common_steps(series)  # [group x seed, step]
  logs = np.log10(np.maximum(values, 1e-6)).reshape(len(groups), -1,
                                                    len(steps))
  return groups, steps, logs.mean(axis=1)


def plot(runs, out_dir):
  if not runs_lib.measuring(runs, 'coherence', 'layers'):
    return None
  probes = ('clean', 'noisy')
  settings = runs_lib.settings(runs)
  fig, axes = runs_lib.plt.subplots(
      len(probes), len(settings), figsize=(3.6 * len(settings), 6),
      squeeze=False, layout='constrained')
  data = {(row, i): _matrix(members, probe)
          for row, probe in enumerate(probes)
          for i, (_, members) in enumerate(settings)}
  drawn = [z for _, _, z in data.values() if z is not None]
  # Diverging around m-coherence 1 (log10 = 0): a layer below 1, the papers'
  # "first layer below 1" finding, shows blue instead of clipping to 1.
  low = min([z.min() for z in drawn] + [-0.1])
  high = max([z.max() for z in drawn] + [0.1])
  norm = matplotlib.colors.TwoSlopeNorm(vmin=low, vcenter=0, vmax=high)
  image = None
  for (row, i), (groups, steps, z) in data.items():
    ax = axes[row][i]
    label, members = settings[i]
    runs_lib.title(ax, f'{runs_lib.setting_title(label, members)}, '
                   f'{probes[row]}')
    if groups is None:
      ax.text(0.5, 0.5, f'{probes[row]} probe not measured:\n'
              f'{runs_lib.why_no_probe(members[0], probes[row])}',
              ha='center', fontsize=8, transform=ax.transAxes)
      ax.axis('off')
      continue
    # Cells span the midpoints between probe steps on the step axis.
    mid = [(a + b) / 2 for a, b in zip(steps[:-1], steps[1:])]
    edges = ([steps[0] - (mid[0] - steps[0]) if mid else steps[0] - 0.5]
             + mid + [steps[-1] + (steps[-1] - mid[-1]) if mid
                      else steps[-1] + 0.5])
    edges[0] = max(edges[0], 0)
    image = ax.pcolormesh(edges, np.arange(len(groups) + 1), z,
                          cmap='RdBu_r', norm=norm)
    ax.invert_yaxis()  # input side at the top
    ax.set_yticks(np.arange(len(groups)) + 0.5, groups, fontsize=7)
    runs_lib.step_axis(ax)
    ax.set_xlabel('step', fontsize=7)
  if image is not None:
    # Ticks on both sides of 0 (the default locator left the shorter,
    # negative side of the diverging scale unlabelled).
    # Cut toward 0 to 2 decimals, so the end ticks stay inside the range.
    ticks = np.unique(np.trunc(np.concatenate(
        [np.linspace(low, 0, 3), np.linspace(0, high, 4)]) * 100) / 100)
    fig.colorbar(image, ax=axes.ravel().tolist(), ticks=ticks,
                 label='log10 m-coherence (0: m-coherence 1)')
  return runs_lib.save(fig, out_dir, 'layers')


if __name__ == '__main__':
  runs_lib.main(plot, __doc__)
