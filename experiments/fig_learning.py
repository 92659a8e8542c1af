"""When examples are learned: clean vs noisy, against training and original
labels; one panel per setting.

    python -m experiments.fig_learning SWEEP_DIR --out plots/

From each run's learning-times file (`learning.npz`, the `learning_times`
measurement): at each measured step t, the fraction of clean examples,
of noisy examples against their noisy (training) label, and of noisy
examples against their original label that were classified correctly at
some step <= t (first correct, solid) and that have stayed correct from some
step <= t to the end of the run (learned for good, dashed). Seeds of one
setting: mean line and min-max band. The CG paper's finding: clean examples
are learned much earlier than noisy ones.
"""
import io

import numpy as np

from cgjax import storage

from . import runs as runs_lib

# Its heading in the report (experiments.report).
TITLE = 'When examples are learned'

# Clean drawn wide underneath: noisy examples against their original label
# often follow it closely (the network generalizes before it memorizes).
CURVES = {('clean', ''): ('clean', dict(color='C0', lw=3, alpha=0.7)),
          ('noisy', ''): ('noisy (noisy label)', dict(color='C1')),
          ('noisy', '_clean_label'): ('noisy (original label)',
                                      dict(color='C2', lw=1.2))}
KINDS = {'first_correct': ('first correct', '-'),
         'stays_correct': ('learned for good', '--')}


def load_times(run):
  """The run's learning-times arrays, or None."""
  name = run.measurement('learning_times')
  path = storage.join(run.workdir, f'{name}.npz') if name else ''
  if not path or not storage.exists(path):
    return None
  with np.load(io.BytesIO(storage.read_bytes(path))) as f:
    return {k: f[k] for k in f.files}


def cumulative(times, rows, column):
  """(steps, fraction of `rows` with 0 <= times[column] <= step)."""
  steps = times['steps'].tolist()
  when = times[column][rows]
  return steps, [float(np.mean((when >= 0) & (when <= t))) for t in steps]


def plot(runs, out_dir):
  if not runs_lib.measuring(runs, 'learning_times', 'learning'):
    return None
  groups = runs_lib.settings(runs)
  fig, axes = runs_lib.panels(len(groups), width=4.2, sharey=True)
  for ax, (label, members) in zip(axes, groups):
    loaded = [t for t in map(load_times, members) if t is not None]
    runs_lib.title(ax, runs_lib.setting_title(label, members))
    if not loaded:
      runs_lib.note(ax, 'no learning times\n(no learning_times measurement)')
      continue
    for (group, suffix), (name, style) in CURVES.items():
      for kind, (word, ls) in KINDS.items():
        series = []
        for t in loaded:
          rows = t['is_noisy'] if group == 'noisy' else ~t['is_noisy']
          if rows.any():
            series.append(cumulative(t, rows, kind + suffix))
        runs_lib.mean_and_spread(ax, series, label=f'{name}, {word}',
                                 ls=ls, **style)
    ax.set(xlabel='step', ylim=(0, 1.02))
    runs_lib.step_axis(ax)
  runs_lib.ylabel(axes, 'fraction of examples')
  runs_lib.legend_once(fig, axes)
  return runs_lib.save(fig, out_dir, 'learning')


if __name__ == '__main__':
  runs_lib.main(plot, __doc__)
