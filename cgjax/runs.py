"""Runs from Python: `load(workdir or sweep dir)`, for notebooks and scripts.

    from cgjax import runs
    run = runs.load('runs/quick')            # a workdir -> Run
    run.config.noise.rate, run.status['state']
    run.metrics['probe/test/m_coherence'].dropna()   # wide DataFrame by step
    run.per_example()['learning']['first_correct']   # per-example arrays
    run.restore()['params']                  # a checkpoint's parameters
    run.evaluate(measurements={...})         # measure a checkpoint anew

    sweep = runs.load('runs/noise_sweep')    # a sweep dir -> Sweep of Runs
    sweep.table(['eval/test_acc'])           # one row per trial: overrides,
                                             # state and final values

Reading never writes to the run, so it works on running ones too.
"""
import dataclasses
import functools
import io
import json

import ml_collections
import numpy as np
import pandas as pd

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
  """One workdir. `overrides`: its sweep trial's ({} outside a sweep)."""
  workdir: str
  overrides: dict = dataclasses.field(default_factory=dict)

  @functools.cached_property
  def config(self) -> ml_collections.ConfigDict:
    """config.json, its lists as the tuples the config files wrote (flax
    modules hash their fields)."""
    return ml_collections.ConfigDict(_tuples(workdir_lib.read_config(
        self.workdir)))

  @property
  def status(self) -> dict:
    """status.json (state, last step, message, time); re-read each time,
    {'state': 'new'} before the run wrote one."""
    return workdir_lib.read_status_file(self.workdir)

  @property
  def metrics(self) -> pd.DataFrame:
    """Every scalar, one column per metric and one row per step logged (NaN
    where a metric was not measured at that step); re-read each time."""
    rows = (workdir_lib.read_metrics(self.workdir)
            if workdir_lib.has_metrics(self.workdir) else [])
    if not rows:
      return pd.DataFrame(index=pd.Index([], name='step'))
    frame = pd.DataFrame(rows).pivot_table(index='step', columns='name',
                                           values='value', aggfunc='last')
    frame.columns.name = None
    return frame

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

  def table(self, metrics=('eval/test_acc',)) -> pd.DataFrame:
    """One row per run: its overrides (columns named by field), state and
    the last value of each of `metrics`."""
    rows = []
    for run in self:
      frame = run.metrics
      last = frame.ffill().iloc[-1] if len(frame) else {}
      rows.append({'workdir': run.workdir, **run.overrides,
                   'state': run.status['state'],
                   **{m: last.get(m, np.nan) for m in metrics}})
    return pd.DataFrame(rows)


def load(path: str) -> Run | Sweep:
  """A Run for a workdir, a Sweep for a sweep dir (a dir of workdirs)."""
  found = find_workdirs(path)
  if found == [(path, None)]:
    return Run(path)
  if not found:
    raise ValueError(f'no run (a dir with config.json) in {path!r}')
  return Sweep(path, [Run(w, o or {}) for w, o in found])


def _tuples(tree):
  if isinstance(tree, dict):
    return {k: _tuples(v) for k, v in tree.items()}
  if isinstance(tree, list):
    return tuple(_tuples(v) for v in tree)
  return tree


def _to_host(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.tree.map(np.asarray, tree)
