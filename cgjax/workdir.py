"""Everything a run keeps in its workdir, and nothing lost on a crash.

    config.json     the full config; a relaunch with a different one is refused
    status.json     {"state": running|done|failed|diverged, "step", "message", "time"}
    metrics.jsonl   one JSON object per line: {"step": int, "name": str, "value": float}
    tb/             TensorBoard event files with the same scalars
    checkpoints/    orbax checkpoints: train state, data iterator state and
                    the measurements' own state (e.g. learning times)
    ...             files of the measurements (probe_ids.json, learning.npz)

Only process 0 writes the plain files; orbax coordinates its own writes.
"""
import json
import os
import time

import jax
import orbax.checkpoint as ocp


def _config_dict(config) -> dict:
  return json.loads(config.to_json_best_effort(sort_keys=True))


def _diff(old, new, prefix=''):
  keys = sorted(set(old) | set(new))
  out = []
  for k in keys:
    a, b = old.get(k, '<absent>'), new.get(k, '<absent>')
    if isinstance(a, dict) and isinstance(b, dict):
      out += _diff(a, b, f'{prefix}{k}.')
    elif a != b:
      out.append(f'{prefix}{k}: {a!r} in the workdir, {b!r} now')
  return out


def is_writer() -> bool:
  return jax.process_index() == 0


def prepare(workdir: str, config) -> bool:
  """Creates workdir or checks it holds the same config; True if it exists.

  Raises before writing anything when the stored config differs.
  """
  path = os.path.join(workdir, 'config.json')
  new = _config_dict(config)
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    if old != new:
      raise ValueError(
          f'workdir {workdir} holds a run with a different config; use a new '
          'workdir (or the same config to resume). Differences:\n  '
          + '\n  '.join(_diff(old, new)))
    return True
  if is_writer():
    os.makedirs(workdir, exist_ok=True)
    _atomic_write_json(path, new)
  return False


def _atomic_write_json(path, obj):
  tmp = f'{path}.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)


def write_json(workdir, name, obj):
  if is_writer():
    _atomic_write_json(os.path.join(workdir, name), obj)


def set_status(workdir, state: str, step: int, message: str = ''):
  write_json(workdir, 'status.json', {'state': state, 'step': step,
                                      'message': message, 'time': time.time()})


def read_status(workdir) -> str:
  """The run's state from status.json; 'new' where there is none yet."""
  try:
    with open(os.path.join(workdir, 'status.json')) as f:
      return json.load(f)['state']
  except (OSError, ValueError, KeyError):
    return 'new'


def read_metrics(workdir) -> list[dict]:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f if line.strip()]


def latest_values(workdir) -> dict:
  """{name: value at its last logged step}."""
  return {r['name']: r['value'] for r in read_metrics(workdir)}


class MetricWriter:
  """Appends scalars to metrics.jsonl and TensorBoard (process 0 only).

  `keep_through` is the step of the checkpoint a run resumes from (-1: none).
  Rows after it, written by an interrupted run past that checkpoint, are
  dropped (and purged from TensorBoard), so the files end up as an
  uninterrupted run's would.
  """

  def __init__(self, workdir: str, keep_through: int = -1):
    self._active = is_writer()
    if not self._active:
      return
    self._path = os.path.join(workdir, 'metrics.jsonl')
    existed = os.path.exists(self._path)
    if existed:
      kept = [r for r in read_metrics(workdir) if r['step'] <= keep_through]
      with open(self._path + '.tmp', 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in kept)
      os.replace(self._path + '.tmp', self._path)
    self._file = open(self._path, 'a')
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._tb = SummaryWriter(os.path.join(workdir, 'tb'),
                             purge_step=keep_through + 1 if existed else None)

  def write(self, step: int, scalars: dict):
    if not self._active:
      return
    for name, value in sorted(scalars.items()):
      self._file.write(json.dumps({'step': int(step), 'name': name,
                                   'value': float(value)}) + '\n')
      self._tb.add_scalar(name, float(value), int(step))
    self._file.flush()

  def close(self):
    if self._active:
      self._file.close()
      self._tb.close()


class Checkpointer:
  """Orbax checkpoints of the train state and the data iterator state."""

  def __init__(self, workdir: str, keep: int):
    # The caller decides when to save: orbax's own interval policy would also
    # save the very first step it is offered.
    self._manager = ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), 'checkpoints'),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def latest_step(self):
    return self._manager.latest_step()

  def save(self, step: int, state, data_state: dict, measured: dict):
    """`measured`: the measurements' own state, {name: {field: array}}."""
    items = {'state': ocp.args.StandardSave(state),
             'data': ocp.args.JsonSave(data_state)}
    if measured:  # orbax refuses an empty item
      items['measurements'] = ocp.args.StandardSave(measured)
    self._manager.save(step, args=ocp.args.Composite(**items), force=True)

  def restore(self, step: int, abstract_state, with_measurements: bool):
    """(state, data state, measurements' state or {})."""
    items = {'state': ocp.args.StandardRestore(abstract_state),
             'data': ocp.args.JsonRestore()}
    if with_measurements:  # host arrays, restored as saved
      items['measurements'] = ocp.args.StandardRestore()
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    return (restored.state, restored.data,
            restored.measurements if with_measurements else {})

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()
