"""Everything a run keeps in its workdir, and nothing lost on a crash.

    lock.json       the live owner (host, pid, start, heartbeat); taken before
                    anything else is written, released at exit
    config.json     the full config; a relaunch with a different one is refused
    status.json     {"state": running|done|failed|diverged|preempted|
                    interrupted, "step", "message", "time", "heartbeat"}
    metrics.jsonl   one JSON object per line: {"step": int, "name": str, "value": float}
    tb/             TensorBoard event files with the same scalars
    checkpoints/    orbax checkpoints: train state, data iterator state and
                    the measurements' own state (e.g. learning times)
    ...             files of the measurements (probe_ids.json, learning.npz)

Only process 0 writes the plain files; orbax coordinates its own writes.
Every error about a workdir file names the file.
"""
import json
import logging
import os
import socket
import threading
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


def _load_json(path):
  try:
    with open(path) as f:
      return json.load(f)
  except ValueError as err:
    raise ValueError(f'{path} is not valid JSON ({err}); restore or delete '
                     'it') from None


def read_config(workdir: str) -> dict:
  """The run's config.json, as a dict; an error naming the file if absent."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise ValueError(f'{path} does not exist: {workdir!r} is not a run '
                     'workdir')
  return _load_json(path)


def config_changes(workdir: str, config) -> list[str]:
  """'field: old in the workdir, new now' for each field of `config` that
  differs from the run's config.json (dotted field names)."""
  return _diff(read_config(workdir), _config_dict(config))


def prepare(workdir: str, config) -> bool:
  """Creates workdir or checks it holds the same config; True if it exists.

  Raises before writing anything when the stored config differs, or when
  config.json is missing from a workdir that holds a run's checkpoints or
  metrics (a fresh start would delete them).
  """
  path = os.path.join(workdir, 'config.json')
  new = _config_dict(config)
  if os.path.exists(path):
    old = _load_json(path)
    if old != new:
      raise ValueError(
          f'workdir {workdir} holds a run with a different config; use a new '
          'workdir (or the same config to resume). Differences:\n  '
          + '\n  '.join(_diff(old, new)))
    return True
  leftovers = [n for n in ('checkpoints', 'metrics.jsonl')
               if os.path.exists(os.path.join(workdir, n))]
  if leftovers:
    raise ValueError(f'{path} is missing but the workdir holds '
                     f'{" and ".join(leftovers)} of a run: restore config.json '
                     'to resume, or use a new workdir')
  if is_writer():
    os.makedirs(workdir, exist_ok=True)
    _atomic_write_json(path, new)
  return False


class Locked(RuntimeError):
  """Another live process owns the workdir."""


class Lock:
  """The workdir's owner: lock.json with host, pid, start and a heartbeat
  refreshed by a background thread every `HEARTBEAT` seconds.

  A second launch while the owner lives is refused, naming it. A lock is
  stale, and taken over with a warning, when its owner is a dead process of
  this host or its heartbeat is older than `stale_after` seconds (an owner
  on another host that was preempted). Process 0 holds it for all processes.
  """
  HEARTBEAT = 10.0

  def __init__(self, workdir: str, stale_after: float):
    self._path = os.path.join(workdir, 'lock.json')
    self._stale_after = stale_after
    self._stop = threading.Event()
    self._thread = None
    self.owner = {'host': socket.gethostname(), 'pid': os.getpid(),
                  'start': time.time()}

  def acquire(self):
    if not is_writer():
      return self
    os.makedirs(os.path.dirname(self._path), exist_ok=True)
    held = owner_of(os.path.dirname(self._path), self._stale_after)
    if held is not None:
      age = time.time() - held['heartbeat']
      raise Locked(f'{self._path}: the workdir is in use by pid {held["pid"]}'
                   f' on {held["host"]} (heartbeat {age:.0f} s ago); wait '
                   'for it or stop it')
    if os.path.exists(self._path):
      print(f'[cgjax] warning: taking over the stale {self._path} (its owner '
            f'is not running on this host, or its heartbeat is older than '
            f'{self._stale_after:g} s)', flush=True)
    self._write()
    self._thread = threading.Thread(target=self._beat, daemon=True,
                                    name='cgjax-lock-heartbeat')
    self._thread.start()
    return self

  def _write(self):
    _atomic_write_json(self._path, {**self.owner, 'heartbeat': time.time()})

  def _beat(self):
    while not self._stop.wait(self.HEARTBEAT):
      try:
        self._write()
      except OSError as err:  # e.g. a full disk: the run itself reports it
        logging.warning('cannot refresh %s: %s', self._path, err)

  def release(self):
    if self._thread is None:
      return
    self._stop.set()
    self._thread.join()
    self._thread = None
    try:
      os.remove(self._path)
    except OSError:
      pass


def _alive(pid: int) -> bool:
  """Whether pid runs on this host (a zombie, killed but not yet reaped by
  its parent, does not)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
  except OSError:  # no /proc (macOS): the signal check is all there is
    return True


def owner_of(workdir: str, stale_after: float) -> dict | None:
  """The live owner recorded in workdir/lock.json, or None (no lock, or a
  stale one, which is then reported as taken over)."""
  path = os.path.join(workdir, 'lock.json')
  try:
    with open(path) as f:
      held = json.load(f)
  except FileNotFoundError:
    return None
  except ValueError:  # torn by a crash mid-write: nobody can own it
    return None
  age = time.time() - held.get('heartbeat', 0)
  dead = (held.get('host') == socket.gethostname()
          and not _alive(int(held.get('pid', -1))))
  return None if dead or age > stale_after else held


def _atomic_write_json(path, obj):
  tmp = f'{path}.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)


def write_json(workdir, name, obj):
  if is_writer():
    _atomic_write_json(os.path.join(workdir, name), obj)


def set_status(workdir, state: str, step: int, message: str = ''):
  """status.json: the state, the last step reached, and when (heartbeat)."""
  write_json(workdir, 'status.json', {'state': state, 'step': int(step),
                                      'message': message, 'time': time.time(),
                                      'heartbeat': time.time()})


def read_status(workdir) -> str:
  """The run's state from status.json; 'new' where there is none yet."""
  try:
    with open(os.path.join(workdir, 'status.json')) as f:
      return json.load(f)['state']
  except (OSError, ValueError, KeyError):
    return 'new'


def read_metrics(workdir, repair: bool = False) -> list[dict]:
  """The rows of metrics.jsonl. A torn last line (a crash or a full disk
  mid-write) is dropped with a warning, and with `repair` cut from the file;
  a bad line elsewhere is an error naming file and line."""
  path = os.path.join(workdir, 'metrics.jsonl')
  with open(path) as f:
    lines = f.readlines()
  rows = []
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      rows.append(json.loads(line))
    except ValueError:
      if i < len(lines) - 1:
        raise ValueError(f'{path}, line {i + 1}: not a JSON row '
                         f'({line[:60]!r}); repair or delete it') from None
      print(f'[cgjax] warning: {path}: dropped a torn last line '
            f'({line[:60]!r})', flush=True)
      if repair and is_writer():
        with open(path + '.tmp', 'w') as f:
          f.writelines(lines[:i])
        os.replace(path + '.tmp', path)
  return rows


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
      kept = [r for r in read_metrics(workdir, repair=True)
              if r['step'] <= keep_through]
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

  def write_config(self, flat: dict):
    """The resolved config to TensorBoard: a text table and hparams (scalar
    and string fields), so runs can be compared by setting there."""
    if not self._active:
      return
    self._tb.add_text('config', '\n'.join(
        f'    {k} = {v!r}' for k, v in sorted(flat.items())), 0)
    hparams = {k: v for k, v in flat.items()
               if isinstance(v, (bool, int, float, str))}
    self._tb.add_hparams(hparams, {}, name='.', global_step=0)

  def flush(self):
    """Metrics are flushed at every write; TensorBoard here (checkpoints)."""
    if self._active:
      self._tb.flush()

  def close(self):
    if self._active:
      self._file.close()
      self._tb.close()


def saved_steps(workdir: str) -> list[int]:
  """The steps of the run's finished checkpoints, oldest first, read from
  the directory alone (nothing created, no orbax manager: for readers of a
  run that may still be training)."""
  path = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(path):
    return []
  return sorted(int(d) for d in os.listdir(path) if d.isdigit())


class Checkpointer:
  """Orbax checkpoints of the train state and the data iterator state."""

  def __init__(self, workdir: str, keep: int):
    self._dir = os.path.join(os.path.abspath(workdir), 'checkpoints')
    self._keep = keep
    self._open()

  def _open(self):
    # The caller decides when to save: orbax's own interval policy would also
    # save the very first step it is offered.
    self._manager = ocp.CheckpointManager(
        self._dir, options=ocp.CheckpointManagerOptions(
            max_to_keep=self._keep, create=True))

  def set_aside(self, step: int) -> str:
    """Moves an unrestorable checkpoint out of the way (kept, for a look) to
    WORKDIR/unrestorable_checkpoints/STEP; returns the new path."""
    self._manager.close()
    target = os.path.join(os.path.dirname(self._dir),
                          'unrestorable_checkpoints', str(step))
    if is_writer():
      os.makedirs(os.path.dirname(target), exist_ok=True)
      if os.path.exists(target):
        target += f'.{int(time.time())}'
      os.replace(self.path(step), target)
    if jax.process_count() > 1:  # every process sees the move before reopening
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices(f'cgjax_set_aside_{step}')
    self._open()
    return target

  def latest_step(self):
    return self._manager.latest_step()

  def path(self, step: int | None = None) -> str:
    return self._dir if step is None else os.path.join(self._dir, str(step))

  def steps(self) -> list[int]:
    """The saved steps, newest first."""
    return sorted(self._manager.all_steps(), reverse=True)

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
