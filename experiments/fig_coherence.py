"""m-coherence over training, one panel per setting (the paper's figure).

    python -m experiments.fig_coherence SWEEP_DIR --out plots/

One panel per setting: clean (solid), noisy (dashed), test (dotted) and,
where measured, mixed ('train', dash-dot) probe sets; seeds of a setting as
mean line and min-max band. Log axes as in the m-coherence paper (the step
axis linear between 0 and 1, so step 0 shows); the gray line is the
orthogonal baseline 1; the ceiling m (all gradients equal) is in the axis
label, the y range is the data's.
With several settings, a last panel has the test probe of every setting,
one color each.
"""
from . import runs as runs_lib

# Its heading in the report (experiments.report).
TITLE = 'm-coherence over training'


def _m(run):
  return run.measurement_config('coherence').get('m')


def plot(runs, out_dir):
  if not runs_lib.measuring(runs, 'coherence', 'coherence'):
    return None
  groups = runs_lib.settings(runs)
  fig, axes = runs_lib.panels(len(groups) + (len(groups) > 1), sharey=True)
  for ax, (label, members) in zip(axes, groups):
    for probe, style in runs_lib.PROBE_STYLE.items():
      runs_lib.mean_and_spread(ax, runs_lib.metric_series(
          members, 'coherence', f'{probe}/m_coherence'), label=probe, **style)
    ax.axhline(1.0, color='gray', lw=0.8, label='_1')
    missing = [p for p in runs_lib.PROBES
               if not runs_lib.metric_series(members, 'coherence',
                                             f'{p}/m_coherence')]
    why = ''.join(f'\n(no {p} probe: {runs_lib.why_no_probe(members[0], p)})'
                  for p in missing)
    runs_lib.title(ax, runs_lib.setting_title(label, members) + why)
    ax.set(yscale='log', xlabel='step')
    runs_lib.step_axis(ax)
  if len(groups) > 1:
    ax = axes[-1]
    if runs_lib.overlay(ax, groups, 'coherence', 'test/m_coherence',
                        'test m-coherence'):
      ax.set_yscale('log')
      runs_lib.step_axis(ax)
    else:
      runs_lib.note(ax, 'fewer than two settings have a test probe')
  # The ceiling m (all gradients equal) as a label, not a line: drawn, it
  # squeezed the data into the bottom third of every panel.
  runs_lib.ylabel(axes, f'm-coherence (ceiling m = {_m(runs[0])})')
  runs_lib.legend_once(fig, axes[:len(groups)])
  return runs_lib.save(fig, out_dir, 'coherence')


if __name__ == '__main__':
  runs_lib.main(plot, __doc__)
