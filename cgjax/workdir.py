"""Everything a run keeps in its workdir, and nothing lost on a crash.

    lock.json       the live owner (host, pid, start, heartbeat); taken before
                    anything else is written, released at exit
    config.json     the full config; a relaunch with a different one is refused
    status.json     {"state": running|done|failed|diverged|preempted|
                    interrupted, "step", "message", "time", "heartbeat"}
    metrics.jsonl   one JSON object per line: {"step": int, "name": str, "value": float}
    metrics.parts/  object stores only (no append there): the rows since
                    metrics.jsonl was last written whole, one object per
                    flush; readers merge them, a resume folds them in
    events.out.tfevents.*
                    TensorBoard: the same scalars, the config as text and as
                    hparams (`tensorboard --logdir runs` lists each run by its
                    workdir name)
    checkpoints/    orbax checkpoints: train state, data iterator state and
                    the measurements' own state (e.g. learning times)
    ...             files of the measurements (probe_ids.json, learning.npz)

Every file goes through cgjax.storage, so a workdir can be local or on
gs://. Only process 0 writes the plain files; orbax coordinates its own
writes. Every error about a workdir file names the file.
"""
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid

import jax
import orbax.checkpoint as ocp

from cgjax import storage


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
    return json.loads(storage.read_text(path))
  except ValueError as err:
    raise ValueError(f'{path} is not valid JSON ({err}); restore or delete '
                     'it') from None


def read_config(workdir: str) -> dict:
  """The run's config.json, as a dict; an error naming the file if absent."""
  path = storage.join(workdir, 'config.json')
  if not storage.exists(path):
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
  path = storage.join(workdir, 'config.json')
  new = _config_dict(config)
  if storage.exists(path):
    old = _load_json(path)
    if old != new:
      raise ValueError(
          f'workdir {workdir} holds a run with a different config; use a new '
          'workdir (or the same config to resume). Differences:\n  '
          + '\n  '.join(_diff(old, new)))
    return True
  leftovers = [n for n in ('checkpoints', 'metrics.jsonl', METRIC_PARTS)
               if storage.exists(storage.join(workdir, n))]
  if leftovers:
    raise ValueError(f'{path} is missing but the workdir holds '
                     f'{" and ".join(leftovers)} of a run: restore config.json '
                     'to resume, or use a new workdir')
  write_json(workdir, 'config.json', new)
  return False


class Locked(RuntimeError):
  """Another live process owns the workdir."""


class LockLost(RuntimeError):
  """This process's lock was taken over (it was suspended past
  lock_stale_after, and another launch took the workdir): it must stop
  without writing another byte to the workdir."""


# The locks this process holds, by workdir: every write of a run's files
# (status, metrics, checkpoints, per-example files) re-checks its token.
_HELD = {}


def check_owner(workdir: str):
  """Raises LockLost if this process held `workdir`'s lock and no longer
  does; nothing for a workdir it never locked (evaluations/, readers)."""
  lock = _HELD.get(workdir)
  if lock is not None:
    lock.check()


class Lock:
  """The workdir's owner: lock.json with host, pid, the pid's start time, a
  random token and a heartbeat refreshed by a background thread every
  `HEARTBEAT` seconds.

  Created only where none exists (O_EXCL locally, a generation-0
  precondition on GCS), so of two launches at once one wins. A second
  launch while the owner lives is refused, naming it. A lock is stale, and
  taken over with a warning, when its owner is a dead process of this host,
  a process of this host whose pid was reused (the pid runs, but started at
  another time: containers restart with the same pids), or its heartbeat is
  older than `stale_after` seconds (an owner on another host that was
  preempted, or one suspended by Ctrl-Z / scontrol suspend). The token
  fences a taken-over owner: it re-reads lock.json before every write and
  stops (LockLost) once the token there is not its own. Process 0 holds it
  for all processes.
  """
  HEARTBEAT = 10.0

  def __init__(self, workdir: str, stale_after: float):
    self._workdir = workdir
    self._path = storage.join(workdir, 'lock.json')
    self._stale_after = stale_after
    self._stop = threading.Event()
    self._thread = None
    self.owner = {'host': socket.gethostname(), 'pid': os.getpid(),
                  'pid_start': _started_at(os.getpid()), 'start': time.time(),
                  'token': uuid.uuid4().hex}

  def acquire(self):
    if not is_writer():
      return self
    storage.makedirs(self._workdir)
    for _ in range(3):  # another launch may be taking it over at once
      if storage.create_exclusive(self._path, self._text()):
        break
      held = owner_of(self._workdir, self._stale_after)
      if held is not None:
        age = time.time() - held['heartbeat']
        raise Locked(f'{self._path}: the workdir is in use by pid '
                     f'{held["pid"]} on {held["host"]} (heartbeat {age:.0f} s '
                     'ago); wait for it or stop it')
      print(f'[cgjax] warning: taking over the stale {self._path} (its owner '
            'is not running on this host, or its heartbeat is older than '
            f'{self._stale_after:g} s)', flush=True)
      storage.remove(self._path)
    else:
      raise Locked(f'{self._path}: another launch keeps taking the workdir; '
                   'run one at a time')
    _HELD[self._workdir] = self
    self._thread = threading.Thread(target=self._beat, daemon=True,
                                    name='cgjax-lock-heartbeat')
    self._thread.start()
    return self

  def _text(self) -> str:
    return json.dumps({**self.owner, 'heartbeat': time.time()}, indent=2)

  def check(self):
    """Raises LockLost unless lock.json still holds this owner's token."""
    held = _read_lock(self._path)
    if held is None or held.get('token') != self.owner['token']:
      other = ('nobody (it was released by the run that took it over)'
               if held is None else
               f'pid {held.get("pid")} on {held.get("host")}')
      raise LockLost(f'{self._path} now belongs to {other}: this process '
                     f'(pid {os.getpid()}) was stopped for longer than '
                     f'lock_stale_after={self._stale_after:g} s and the run '
                     'was taken over; stopping without writing')

  def _beat(self):
    while not self._stop.wait(self.HEARTBEAT):
      try:
        self.check()  # never overwrite the lock of the run that took over
        storage.write_atomic(self._path, self._text())
      except LockLost:
        return  # the main thread stops at its next write
      except OSError as err:  # e.g. a full disk: the run itself reports it
        logging.warning('cannot refresh %s: %s', self._path, err)

  def release(self):
    if self._thread is None:
      return
    self._stop.set()
    self._thread.join()
    self._thread = None
    _HELD.pop(self._workdir, None)
    try:
      self.check()
      storage.remove(self._path)
    except (LockLost, OSError):
      pass  # not ours any more, or the workdir is gone: leave it


def _started_at(pid: int) -> float | None:
  """When process `pid` started (seconds since the epoch, from /proc), or
  None where that cannot be read (no /proc, no such process)."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      ticks = int(f.read().rsplit(')', 1)[1].split()[19])
    with open('/proc/stat') as f:
      boot = next(int(l.split()[1]) for l in f if l.startswith('btime'))
  except (OSError, ValueError, IndexError, StopIteration):
    return None
  return boot + ticks / os.sysconf('SC_CLK_TCK')


def _alive(pid: int, started: float | None) -> bool:
  """Whether pid runs on this host and is the process that `started` then
  (a zombie, killed but not yet reaped by its parent, does not run; a pid
  reused by another process is not that process)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  if started is not None:
    now = _started_at(pid)
    if now is not None and abs(now - started) > 1.0:  # /proc's ticks: 10 ms
      return False
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
  except OSError:  # no /proc (macOS): the signal check is all there is
    return True


def _read_lock(path: str) -> dict | None:
  try:
    return json.loads(storage.read_text(path))
  except FileNotFoundError:
    return None
  except ValueError:  # torn by a crash mid-write: nobody can own it
    return None


def owner_of(workdir: str, stale_after: float) -> dict | None:
  """The live owner recorded in workdir/lock.json, or None (no lock, or a
  stale one, which is then reported as taken over)."""
  held = _read_lock(storage.join(workdir, 'lock.json'))
  if held is None:
    return None
  age = time.time() - held.get('heartbeat', 0)
  dead = (held.get('host') == socket.gethostname()
          and not _alive(int(held.get('pid', -1)), held.get('pid_start')))
  return None if dead or age > stale_after else held


def write_file(workdir, name, data: str | bytes):
  """workdir/name, whole or not at all, by process 0, while it owns the
  workdir (LockLost otherwise)."""
  if is_writer():
    check_owner(workdir)
    storage.write_atomic(storage.join(workdir, name), data)


def write_json(workdir, name, obj):
  write_file(workdir, name, json.dumps(obj, indent=2))


def set_status(workdir, state: str, step: int, message: str = '',
               any_process: bool = False):
  """status.json: the state, the last step reached, and when (heartbeat).
  `any_process`: written by this process even if it is not process 0 (a
  run whose process 0 was lost)."""
  status = {'state': state, 'step': int(step), 'message': message,
            'time': time.time(), 'heartbeat': time.time()}
  if any_process and not is_writer():
    storage.write_atomic(storage.join(workdir, 'status.json'),
                         json.dumps(status, indent=2))
  else:
    write_json(workdir, 'status.json', status)


def read_status_file(workdir) -> dict:
  """status.json (state, step, message, time); {'state': 'new'} where the
  run wrote none yet (or it cannot be read)."""
  try:
    status = json.loads(storage.read_text(storage.join(workdir,
                                                       'status.json')))
  except (OSError, ValueError):
    return {'state': 'new'}
  return status if isinstance(status, dict) and 'state' in status else {
      'state': 'new'}


def read_status(workdir) -> str:
  """The run's state from status.json; 'new' where there is none yet."""
  return read_status_file(workdir)['state']


METRIC_PARTS = 'metrics.parts'


def _parse_rows(path, text, repair: bool) -> list[dict]:
  lines = text.splitlines(keepends=True)
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
        storage.write_atomic(path, ''.join(lines[:i]))
  return rows


def _part_paths(workdir) -> list[str]:
  parts = storage.join(workdir, METRIC_PARTS)
  return [storage.join(parts, n) for n in storage.listdir(parts)
          if n.endswith('.jsonl')]


def has_metrics(workdir) -> bool:
  return (storage.exists(storage.join(workdir, 'metrics.jsonl'))
          or bool(_part_paths(workdir)))


def read_metrics(workdir, repair: bool = False) -> list[dict]:
  """The rows of metrics.jsonl, then those of metrics.parts/ in order. A
  torn last line (a crash or a full disk mid-write) is dropped with a
  warning, and with `repair` cut from the file; a bad line elsewhere is an
  error naming file and line."""
  path = storage.join(workdir, 'metrics.jsonl')
  rows = (_parse_rows(path, storage.read_text(path), repair)
          if storage.exists(path) else [])
  for part in _part_paths(workdir):  # each an object written whole
    rows += _parse_rows(part, storage.read_text(part), False)
  return rows


def latest_values(workdir) -> dict:
  """{name: value at its last logged step}."""
  return {r['name']: r['value'] for r in read_metrics(workdir)}


# The metric columns of TensorBoard's HParams tab (their last values).
HPARAM_METRICS = ('eval/test_acc', 'eval/train_acc', 'eval/clean_acc',
                  'eval/noisy_acc_vs_noisy_label', 'train/loss')


class MetricWriter:
  """Scalars to metrics.jsonl and TensorBoard (process 0 only).

  `keep_through` is the step of the checkpoint a run resumes from (-1: none).
  Rows after it, written by an interrupted run past that checkpoint, are
  dropped (and purged from TensorBoard), so the files end up as an
  uninterrupted run's would; so are the measurement rows of `redo_step`,
  whose measurements the resume runs again. Locally each write is appended and flushed at
  once. An object store cannot append: rows are kept in memory and written
  as one object of metrics.parts/ at each `flush` (every checkpoint) and at
  least every FLUSH_SECONDS, and TensorBoard writes into a local staging
  dir whose event files are copied up whole at the same times. Rows past
  the last checkpoint that a crash loses are the ones a resume drops.
  """
  FLUSH_SECONDS = 60.0

  def __init__(self, workdir: str, keep_through: int = -1,
               redo_step: int | None = None):
    self._active = is_writer()
    if not self._active:
      return
    self._workdir = workdir
    self._path = storage.join(workdir, 'metrics.jsonl')
    self._local = storage.is_local(workdir)
    existed = has_metrics(workdir)
    if existed:
      check_owner(workdir)
      kept = [r for r in read_metrics(workdir, repair=True)
              if r['step'] <= keep_through and not (
                  r['step'] == redo_step and not r['name'].startswith(
                      'train/'))]
      # One row per (step, name): a resume that died between writing the
      # merged file and deleting the parts left rows in both.
      kept = list({(r['step'], r['name']): r for r in kept}.values())
      storage.write_atomic(self._path,
                           ''.join(json.dumps(r) + '\n' for r in kept))
      for part in _part_paths(workdir):
        storage.remove(part)
    self._file = open(self._path, 'a') if self._local else None  # pylint: disable=consider-using-with
    self._pending, self._flushed_at, self._uploaded = [], time.time(), {}
    self._staging = None if self._local else tempfile.mkdtemp(
        prefix='cgjax-tb-')
    self._purge_step = keep_through + 1 if existed else None
    self._tb = None  # opened at the first write: a relaunch of a finished
    # run, which writes nothing, leaves no empty event file

  def _events(self):
    """The one TensorBoard writer of the run, in the workdir itself (so
    TensorBoard names the run by its workdir)."""
    if self._tb is None:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(self._staging or self._workdir,
                               purge_step=self._purge_step)
    return self._tb

  def write(self, step: int, scalars: dict):
    if not self._active:
      return
    lines = ''.join(json.dumps({'step': int(step), 'name': name,
                                'value': float(value)}) + '\n'
                    for name, value in sorted(scalars.items()))
    events = self._events()
    for name, value in sorted(scalars.items()):
      events.add_scalar(name, float(value), int(step))
    if self._local:
      check_owner(self._workdir)
      self._file.write(lines)
      self._file.flush()
      return
    self._pending.append((int(step), lines))
    if time.time() - self._flushed_at >= self.FLUSH_SECONDS:
      self.flush()

  def write_config(self, flat: dict):
    """The resolved config to TensorBoard: a text table, and every field as
    an hparam of the HParams tab (tuples and None as text), with the final
    accuracies and the loss as its metric columns."""
    if not self._active:
      return
    events = self._events()
    events.add_text('config', '\n'.join(
        f'    {k} = {v!r}' for k, v in sorted(flat.items())), 0)
    hparams = {k: v if isinstance(v, (bool, int, float, str)) else str(v)
               for k, v in flat.items()}
    # tensorboardX's add_hparams opens a second writer in the same folder,
    # whose file name collides with this one's within the same second (the
    # records were lost); the three hparams summaries go through this writer.
    from tensorboardX.summary import hparams as hparams_summaries  # pylint: disable=g-import-not-at-top
    file_writer = events._get_file_writer()  # pylint: disable=protected-access
    for summary in hparams_summaries(hparams, dict.fromkeys(HPARAM_METRICS, 0.0)):
      file_writer.add_summary(summary, 0)

  def flush(self):
    """TensorBoard (and, on an object store, the rows since the last flush)
    written out: at each checkpoint, so a resume finds everything up to it."""
    if not self._active:
      return
    if self._tb is not None:
      self._tb.flush()
    if self._local:
      return
    check_owner(self._workdir)
    if self._pending:
      first = self._pending[0][0]
      name = f'{first:010d}-{time.time_ns()}.jsonl'
      storage.write_atomic(storage.join(self._workdir, METRIC_PARTS, name),
                           ''.join(lines for _, lines in self._pending))
      self._pending = []
    for root, _, files in os.walk(self._staging):
      for name in files:
        local = os.path.join(root, name)
        size = os.path.getsize(local)
        if self._uploaded.get(local) != size:
          rel = os.path.relpath(local, self._staging).replace(os.sep, '/')
          storage.upload(local, storage.join(self._workdir, rel))
          self._uploaded[local] = size
    self._flushed_at = time.time()

  def close(self):
    if not self._active:
      return
    if self._tb is not None:
      self._tb.close()
    self.flush()
    if self._local:
      self._file.close()
    else:
      shutil.rmtree(self._staging, ignore_errors=True)


class RecordsAtRisk(ValueError):
  """A relaunch would shorten a run's records: refused, nothing written."""


def check_records(workdir: str, config, checkpoint_steps: list[int]):
  """Refuses (RecordsAtRisk) a relaunch that would replace a run's records
  with fewer: a run that got past its first checkpoint step but has no
  checkpoint any more (a fresh start would rewrite metrics.jsonl from step
  0), or one with checkpoints but without its metrics (a resume would keep
  only the rows after the checkpoint)."""
  status = read_status_file(workdir)
  rows = read_metrics(workdir) if has_metrics(workdir) else []
  how = ' --restart moves the old records to WORKDIR/restart_N/ and starts over'
  if checkpoint_steps and not rows:
    raise RecordsAtRisk(
        f'{storage.join(workdir, "metrics.jsonl")} is missing but the run has '
        f'checkpoints up to step {max(checkpoint_steps)}: resuming would keep '
        'only the rows after it; restore the file, or relaunch with --restart'
        f' (it{how[1:]})')
  reached = max([int(status.get('step', 0)) if status['state'] != 'new'
                 else 0] + [r['step'] for r in rows])
  first = min(config.checkpoint_every, config.num_steps)
  if not checkpoint_steps and reached >= first:
    raise RecordsAtRisk(
        f'{workdir} holds a run that reached step {reached} (status '
        f'{status["state"]}, {len(rows)} metric rows) but no checkpoint to '
        f'resume from ({storage.join(workdir, "checkpoints")} is missing or '
        'empty): a fresh start would replace its records; restore the '
        f'checkpoints, or relaunch with --restart (it{how[1:]})')


def set_aside_records(workdir: str) -> str | None:
  """Moves everything of workdir but its lock and earlier restarts to
  WORKDIR/restart_N/ (N = 1, 2, ...): nothing is deleted. Returns that
  path, or None where there was nothing to move."""
  if not is_writer():
    return None
  names = [n for n in storage.listdir(workdir)
           if n != 'lock.json' and not re.fullmatch(r'restart_\d+', n)]
  if not names:
    return None
  taken = {n for n in storage.listdir(workdir) if n.startswith('restart_')}
  target = storage.join(workdir, next(
      f'restart_{i}' for i in range(1, len(taken) + 2)
      if f'restart_{i}' not in taken))
  check_owner(workdir)
  storage.makedirs(target)
  for name in names:
    storage.move(storage.join(workdir, name), storage.join(target, name))
  return target


# Files a write leaves when it dies midway (storage.write_atomic's and the
# former '.tmp' names) and orbax's unfinished checkpoint dirs.
_LITTER = re.compile(r'.*\.tmp\d*$')
_ORBAX_TMP = re.compile(r'.*\.orbax-checkpoint-tmp.*')


def remove_litter(workdir: str) -> list[str]:
  """Deletes the temp files of writes that died midway (a kill, a full
  disk), in the workdir and in checkpoints/; returns their names. Run by
  the owner before it writes anything, so no live write is touched."""
  if not is_writer():
    return []
  removed = []
  for name in storage.listdir(workdir):
    if _LITTER.fullmatch(name):
      storage.remove(storage.join(workdir, name))
      removed.append(name)
  checkpoints = storage.join(workdir, 'checkpoints')
  for name in storage.listdir(checkpoints):
    if _ORBAX_TMP.fullmatch(name):
      storage.rmtree(storage.join(checkpoints, name))
      removed.append(f'checkpoints/{name}')
  return removed


def fingerprint(config) -> str:
  """The run's identity, stored in each checkpoint: a hash of every config
  field but the measurements (which `--evaluate` may change) and those that
  do not shape the train state."""
  fields = _config_dict(config)
  for name in ('measurements', 'lock_stale_after'):
    fields.pop(name, None)
  for name in ('prefetch', 'workers', 'threads'):  # how, not what, is read
    fields.get('data', {}).pop(name, None)
  return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()
                        ).hexdigest()[:16]


def saved_steps(workdir: str) -> list[int]:
  """The steps of the run's finished checkpoints, oldest first, read from
  the directory alone (nothing created, no orbax manager: for readers of a
  run that may still be training)."""
  return sorted(int(d) for d in storage.listdir(storage.join(workdir,
                                                             'checkpoints'))
                if d.isdigit())


class Checkpointer:
  """Orbax checkpoints of the train state and the data iterator state."""

  def __init__(self, workdir: str, keep: int):
    self._workdir = workdir
    self._dir = storage.join(storage.absolute(workdir), 'checkpoints')
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
    target = storage.join(storage.dirname(self._dir),
                          'unrestorable_checkpoints', str(step))
    if is_writer():
      storage.makedirs(storage.dirname(target))
      if storage.exists(target):
        target += f'.{int(time.time())}'
      storage.move(self.path(step), target)
    if jax.process_count() > 1:  # every process sees the move before reopening
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices(f'cgjax_set_aside_{step}')
    self._open()
    return target

  def latest_step(self):
    return self._manager.latest_step()

  def path(self, step: int | None = None) -> str:
    return self._dir if step is None else storage.join(self._dir, str(step))

  def steps(self) -> list[int]:
    """The saved steps, newest first."""
    return sorted(self._manager.all_steps(), reverse=True)

  def save(self, step: int, state, data_state: dict, measured: dict):
    """`measured`: the measurements' own state, {name: {field: array}}."""
    check_owner(self._workdir)
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
