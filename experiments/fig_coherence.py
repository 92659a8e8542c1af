"""m-coherence over training, one panel per noise level (the paper's figure).

    python -m experiments.fig_coherence SWEEP_DIR --out plots/

Clean (solid), noisy (dashed), test (dotted) and, where measured, mixed
('train', dash-dot) probe sets; log axes as in the m-coherence paper (the
step axis linear between 0 and 1, so step 0 shows); the gray line is the
orthogonal baseline 1 and the dashed gray line m (all gradients equal).
"""
from . import runs as runs_lib


def _m(run):
  return run.config['measurements'].get('probe', {}).get('m')


def plot(runs, out_dir):
  if not runs_lib.measuring(runs, 'coherence', 'coherence'):
    return None
  fig, axes = runs_lib.panels(len(runs), sharey=True)
  for ax, run in zip(axes, runs):
    for probe, style in runs_lib.PROBE_STYLE.items():
      key = f'probe/{probe}/m_coherence'
      if key in run.series:
        steps, values = run.series[key]
        ax.plot(steps, values, label=probe, **style)
    ax.axhline(1.0, color='gray', lw=0.8, label='_1')
    if _m(run):
      ax.axhline(_m(run), color='gray', lw=0.8, ls='--', label='_m')
    runs_lib.title(ax, run.label)
    ax.set(yscale='log', xlabel='step')
    runs_lib.step_axis(ax)
  axes[0].set_ylabel(f'm-coherence (m = {_m(runs[0])})')
  runs_lib.legend_once(fig, axes)
  return runs_lib.save(fig, out_dir, 'coherence')


if __name__ == '__main__':
  runs_lib.main(plot, __doc__)
