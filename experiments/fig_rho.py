"""rho over training with its interval, on the papers' scale beside it.

    python -m experiments.fig_rho SWEEP_DIR --out plots/

rho = (m-coherence - 1) / (m - 1) does not grow with the probe's size m, so
runs probed at different m, and the papers' 40K-80K-example probes, compare
on it. One panel per setting: clean (solid), noisy (dashed), test (dotted)
probe sets; the line is the mean over seeds and the band the seeds' mean
95% interval (rho_low to rho_high, each probe's from its disjoint chunks):
a probe's sampling error, which the union of five seeds' intervals
exaggerated into one band over the whole axis. The right axis reads the same values as the
m-coherence of a probe of M = `measurements.probe.report_m` examples (1 +
(M - 1) rho). The gray line is rho = 0 (orthogonal gradients); the y axis
is linear near 0 and logarithmic beyond 1e-3.
"""
import matplotlib.ticker
import numpy as np

from . import runs as runs_lib

# Its heading in the report (experiments.report).
TITLE = 'rho (m-invariant coherence) over training, with its interval'
LINEAR_BELOW = 1e-3  # symlog's linear range: rho is ~0 for random labels


def _band(members, probe):
  """(steps, mean rho, mean rho_low, mean rho_high) over seeds."""
  series = {k: runs_lib.metric_series(members, 'coherence', f'{probe}/{k}')
            for k in ('rho', 'rho_low', 'rho_high')}
  if not series['rho']:
    return None
  steps, rho = runs_lib.common_steps(series['rho'])
  bounds = []
  for key in ('rho_low', 'rho_high'):
    if len(series[key]) != len(series['rho']):
      bounds.append(None)
      continue
    lookups = [dict(zip(*s)) for s in series[key]]
    bounds.append(np.mean([[at.get(t, np.nan) for t in steps]
                           for at in lookups], 0))
  return steps, rho.mean(0), *bounds


def _right_axis(ax, report_m):
  """The left axis' scale, limits and ticks, labeled 1 + (M - 1) rho (a
  secondary_yaxis does not follow a symlog parent: its ticks came out
  linear)."""
  right = ax.twinx()
  right.set_yscale('symlog', linthresh=LINEAR_BELOW)
  right.set_ylim(ax.get_ylim())
  right.set_yticks([t for t in ax.get_yticks()
                    if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]])
  right.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
      lambda r, _: f'{1 + (report_m - 1) * r:,.3g}'))
  right.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
  right.set_ylabel(f'm-coherence at M = {report_m:,}', fontsize=8)


def plot(runs, out_dir):
  if not runs_lib.measuring(runs, 'coherence', 'fig_rho'):
    return None
  groups = runs_lib.settings(runs)
  fig, axes = runs_lib.panels(len(groups), sharey=True)
  report_m = runs[0].measurement_config('coherence').get('report_m', 0)
  for ax, (label, members) in zip(axes, groups):
    for probe, style in runs_lib.PROBE_STYLE.items():
      band = _band(members, probe)
      if band is None:
        continue
      steps, rho, low, high = band
      ax.plot(steps, rho, label=probe, **style)
      if low is not None and high is not None:
        ax.fill_between(steps, low, high, alpha=0.2, lw=0,
                        color=style.get('color'))
    ax.axhline(0.0, color='gray', lw=0.8, label='_0')
    ax.set_yscale('symlog', linthresh=LINEAR_BELOW)
    ax.set(xlabel='step')
    runs_lib.step_axis(ax)
    runs_lib.title(ax, runs_lib.setting_title(label, members))
  if report_m:  # after every panel is drawn: the shared limits are final
    for ax in axes:
      _right_axis(ax, report_m)
  runs_lib.ylabel(axes, 'rho = (m-coherence - 1) / (m - 1)')
  runs_lib.legend_once(fig, axes)
  return runs_lib.save(fig, out_dir, 'rho')


if __name__ == '__main__':
  runs_lib.main(plot, __doc__)
