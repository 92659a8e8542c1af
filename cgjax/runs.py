"""Runs from Python: `load(workdir or sweep dir)`, for notebooks and scripts.

    from cgjax import runs
    run = runs.load('runs/quick')            # a workdir -> Run
    run.config.noise.rate, run.status['state']
    run.metrics['probe/test/m_coherence'].dropna()   # wide DataFrame by step
    run.per_example()['learning']['first_correct']   # per-example arrays
    run.restore()['params']                  # a checkpoint's parameters
    run.evaluate(measurements={...})         # measure a checkpoint anew
    run.final('eval/test_acc'), run.peak(run.key('coherence', 'clean/m_coherence'))

    sweep = runs.load('runs/noise_sweep')    # a sweep dir -> Sweep of Runs
    sweep.table(['eval/test_acc'])           # one row per trial: overrides,
                                             # state and final values

Reading never writes to the run, so it works on running ones too. This is
the one reader of a workdir: the figure scripts of cgjax.experiments use it
as well. A config.json is data, not code: a model or measurement module it
names outside cgjax and the plug-in folders (cgjax.plugins) is refused.
"""
import collections
import dataclasses
import functools
import io
import json
import os

import ml_collections
import numpy as np
import pandas as pd

from cgjax import plugins
from cgjax import storage
from cgjax import workdir as workdir_lib


def find_workdirs(path: str) -> list[tuple[str, dict | None]]:
  """(workdir, overrides) of a workdir or of every trial of a sweep dir, in
  the sweep's trial order (then any other run dirs below it, by name);
  overrides None where the dir is no trial of a sweep.json."""
  if not storage.isdir(path):
    raise ValueError(f'{path!r} is not a directory (a workdir or a sweep dir)')
  if storage.exists(storage.join(path, 'config.json')):
    return [(path, None)]
  try:
    trials = {t['name']: t['overrides'] for t in json.loads(
        storage.read_text(storage.join(path, 'sweep.json')))['trials']}
  except (OSError, ValueError, KeyError):
    trials = {}
  present = storage.listdir(path)
  names = [d for d in trials if d in present]
  names += [d for d in present if d not in trials]
  return [(storage.join(path, d), trials.get(d)) for d in names
          if storage.exists(storage.join(path, d, 'config.json'))]


@dataclasses.dataclass
class Run:
  """One workdir. `overrides`: its sweep trial's ({} outside a sweep);
  `label`: what sets it apart from the runs it was found with (figures)."""
  workdir: str
  overrides: dict = dataclasses.field(default_factory=dict)
  label: str = ''

  @classmethod
  def in_memory(cls, config: dict, series: dict, workdir: str = '') -> 'Run':
    """A run of given config and series, with no workdir behind it (tests,
    figures of computed data)."""
    run = cls(workdir)
    run.__dict__['config'] = ml_collections.ConfigDict(_tuples(config))
    run.__dict__['series'] = series
    return run

  @functools.cached_property
  def config(self) -> ml_collections.ConfigDict:
    """config.json, its lists as the tuples the config files wrote (flax
    modules hash their fields); refused where it names a plug-in module
    outside cgjax and the plug-in folders."""
    config = workdir_lib.read_config(self.workdir)
    names = {'model.name': config.get('model', {}).get('name', '')}
    for name, cfg in config.get('measurements', {}).items():
      names[f'measurements.{name}.type'] = cfg.get('type', '')
    plugins.check_trusted(names, storage.join(self.workdir, 'config.json'))
    return ml_collections.ConfigDict(_tuples(config))

  @functools.cached_property
  def series(self) -> dict[str, tuple[list, list]]:
    """{metric: (steps, values)}, read once (figures, claims)."""
    out = collections.defaultdict(lambda: ([], []))
    for row in self._rows():
      out[row['name']][0].append(row['step'])
      out[row['name']][1].append(row['value'])
    return dict(out)

  @property
  def noise(self) -> float:
    return float(self.config.noise.rate)

  def measurement(self, type_name: str) -> str | None:
    """The name of the run's first measurement of that type, if any: where
    its metrics are (`eval` for evaluation's `eval/test_acc`)."""
    return next((name for name, m in sorted(
        self.config.get('measurements', {}).items())
                 if m.get('type') == type_name), None)

  def measurement_config(self, type_name: str) -> ml_collections.ConfigDict:
    """The config of the run's first measurement of that type ({} if none)."""
    name = self.measurement(type_name)
    return (self.config.measurements[name] if name else
            ml_collections.ConfigDict())

  def key(self, type_name: str, metric: str) -> str:
    """The full key of a measurement type's metric in this run
    ('coherence', 'clean/m_coherence' -> 'probe/clean/m_coherence'); a key
    no series has where the run has no such measurement."""
    return f'{self.measurement(type_name) or "<no " + type_name + ">"}/{metric}'

  def final(self, name: str) -> float:
    steps, values = self.series.get(name, ((), ()))
    return values[-1] if values else float('nan')

  def peak(self, name: str, width: int = 5) -> tuple[float, int]:
    """(max, its step) of a metric's running median over `width` consecutive
    values, so that one unstable probe cannot make a peak; (nan, -1) when
    absent."""
    steps, values = self.series.get(name, ((), ()))
    if not values:
      return float('nan'), -1
    smooth = running_median(values, width)
    i = int(np.argmax(smooth))
    return float(smooth[i]), steps[i]

  @property
  def status(self) -> dict:
    """status.json (state, last step, message, time); re-read each time,
    {'state': 'new'} before the run wrote one."""
    return workdir_lib.read_status_file(self.workdir)

  @property
  def metrics(self) -> pd.DataFrame:
    """Every scalar, one column per metric and one row per step logged (NaN
    where a metric was not measured at that step); re-read each time."""
    rows = self._rows()
    if not rows:
      return pd.DataFrame(index=pd.Index([], name='step'))
    frame = pd.DataFrame(rows).pivot_table(index='step', columns='name',
                                           values='value', aggfunc='last')
    frame.columns.name = None
    return frame

  def _rows(self) -> list[dict]:
    return (workdir_lib.read_metrics(self.workdir)
            if workdir_lib.has_metrics(self.workdir) else [])

  def per_example(self) -> dict:
    """The measurements' per-example files by name: arrays of each .npz
    (learning times: keys, is_noisy, first_correct, ...) and the contents
    of each .json (probe ids, learned_at key lists)."""
    out = {}
    names = storage.listdir(self.workdir)
    for name in names:
      path = storage.join(self.workdir, name)
      if name.endswith('.npz'):
        with np.load(io.BytesIO(storage.read_bytes(path))) as arrays:
          out[name[:-4]] = dict(arrays)
    for name in names:
      if name.endswith('.json') and name[:-5] not in ('config', 'status',
                                                        'lock', 'sweep'):
        out[name[:-5]] = json.loads(storage.read_text(
            storage.join(self.workdir, name)))
    return out

  def checkpoint_steps(self) -> list[int]:
    return workdir_lib.saved_steps(self.workdir)

  def restore(self, step: int | None = None) -> dict:
    """{'step', 'params', 'batch_stats', 'opt_state'} of the checkpoint at
    `step` (default: the newest), as host arrays: apply them with the model
    (`cgjax.models.get_model(config.model.name, num_classes,
    **config.model.kwargs)`)."""
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    saved = self.checkpoint_steps()
    step = saved[-1] if step is None and saved else step
    if step not in saved:
      at = 'no checkpoint' if step is None else f'no step {step}'
      raise ValueError(f'{self.workdir}/checkpoints has {at}; saved: '
                       f'{saved or "none"}')
    with ocp.CheckpointManager(storage.join(storage.absolute(self.workdir),
                                            'checkpoints')) as manager:
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore()))
    return {k: _to_host(v) for k, v in restored.state.items()}

  def evaluate(self, step: int | None = None,
               measurements: dict | None = None, out_dir: str = '') -> dict:
    """Scalars of the run's measurements (or of `measurements`, {name:
    cgjax.measurements.spec(...)}) on its checkpoint at `step`, as
    `launch.py --evaluate` computes them (written to `out_dir` as well,
    default WORKDIR/evaluations/step_STEP/)."""
    from cgjax import train  # pylint: disable=g-import-not-at-top
    config = ml_collections.ConfigDict(self.config.to_dict())
    if measurements is not None:
      config.measurements = ml_collections.ConfigDict(measurements)
    return train.evaluate(config, self.workdir, step, out_dir)


class Sweep(list):
  """The runs of a sweep dir (or of several), in trial order."""

  def __init__(self, path: str, runs):
    super().__init__(runs)
    self.path = path

  def table(self, metrics=None) -> pd.DataFrame:
    """One row per run: its overrides (columns named by field), state and
    the last value of each of `metrics` (default: the headline metrics
    that the runs' measurements declare)."""
    if metrics is None:
      from cgjax import measurements  # pylint: disable=g-import-not-at-top
      metrics = sorted({k for run in self for k in measurements.headline_keys(
          run.config.measurements, run.series)})
    rows = []
    for run in self:
      frame = run.metrics
      last = frame.ffill().iloc[-1] if len(frame) else {}
      rows.append({'workdir': run.workdir, **run.overrides,
                   'state': run.status['state'],
                   **{m: last.get(m, np.nan) for m in metrics}})
    return pd.DataFrame(rows)


def load(path: str) -> Run | Sweep:
  """A Run for a workdir, a Sweep for a sweep dir (a dir of workdirs). The
  current directory is a plug-in folder, as for launch.py."""
  plugins.search(os.getcwd(), 'the current directory')
  found = find_workdirs(path)
  if found == [(path, None)]:
    return Run(path)
  if not found:
    raise ValueError(f'no run (a dir with config.json) in {path!r}')
  return Sweep(path, [Run(w, o or {}) for w, o in found])


def running_median(values, width: int) -> np.ndarray:
  """Median of each value and its width // 2 neighbours on either side."""
  values = np.asarray(values, float)
  half = width // 2
  return np.array([np.median(values[max(0, i - half):i + half + 1])
                   for i in range(len(values))])


def _tuples(tree):
  if isinstance(tree, dict):
    return {k: _tuples(v) for k, v in tree.items()}
  if isinstance(tree, list):
    return tuple(_tuples(v) for v in tree)
  return tree


def _to_host(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.tree.map(np.asarray, tree)
