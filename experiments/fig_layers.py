"""Per-layer m-coherence over training as heatmaps (rows: layer groups).

    python -m experiments.fig_layers SWEEP_DIR --out plots/

One row of panels per probe set (clean, noisy), one column per noise level;
colour is log10 m-coherence of each layer group (the model's `layer_group`,
e.g. ResNet stages) at each probe step, input side at the top.
"""
import numpy as np

from experiments import runs as runs_lib


def _matrix(run, probe):
  prefix = f'probe/{probe}/per_group/'
  groups = [k[len(prefix):-len('/m_coherence')] for k in run.series
            if k.startswith(prefix) and k.endswith('/m_coherence')]
  if not groups:
    return None, None, None
  steps = run.series[f'{prefix}{groups[0]}/m_coherence'][0]
  values = np.array([run.series[f'{prefix}{g}/m_coherence'][1]
                     for g in groups])
  return groups, steps, np.log10(np.maximum(values, 1e-3))


def plot(runs, out_dir):
  if not runs_lib.measuring(runs, 'coherence', 'layers'):
    return None
  probes = ('clean', 'noisy')
  fig, axes = runs_lib.plt.subplots(
      len(probes), len(runs), figsize=(3.6 * len(runs), 6), squeeze=False,
      layout='constrained')
  data = {(row, i): _matrix(run, probe) for row, probe in enumerate(probes)
          for i, run in enumerate(runs)}
  top = max([z.max() for _, _, z in data.values() if z is not None] + [1e-3])
  image = None
  for (row, i), (groups, steps, z) in data.items():
    ax = axes[row][i]
    runs_lib.title(ax, f'{runs[i].label}, {probes[row]}')
    if groups is None:
      ax.text(0.5, 0.5, f'no {probes[row]} examples', ha='center',
              transform=ax.transAxes)
      ax.axis('off')
      continue
    image = ax.imshow(z, aspect='auto', cmap='viridis', vmin=0, vmax=top)
    ticks = np.linspace(0, len(steps) - 1, min(5, len(steps))).astype(int)
    ax.set_xticks(ticks, [steps[i] for i in ticks], fontsize=7)
    ax.set_yticks(range(len(groups)), groups, fontsize=7)
    ax.set_xlabel('probe step (log-spaced, labelled)', fontsize=7)
  if image is not None:
    fig.colorbar(image, ax=axes.ravel().tolist(), label='log10 m-coherence')
  return runs_lib.save(fig, out_dir, 'layers')


if __name__ == '__main__':
  runs_lib.main(plot, __doc__)
