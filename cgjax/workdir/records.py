"""status.json, metrics.jsonl (+ TensorBoard) and the safety of records.

The commit point of a run is its last finished checkpoint: rows past it are
provisional, and a resume (or a fresh start, where no checkpoint ever
finished) drops them before it writes (`MetricWriter`). status.json records
that commit point (`checkpoint`), so a relaunch can tell a crash's leftovers
from a committed checkpoint that went missing (`check_records`).
"""
import errno
import json
import os
import re
import shutil
import tempfile
import time

from cgjax import storage
from cgjax.workdir.lock import check_owner
from cgjax.workdir.lock import is_writer
from cgjax.workdir.lock import Refused


def load_json(path) -> dict:
  """A JSON object file; an error naming the file where it is not one."""
  try:
    value = json.loads(storage.read_text(path))
  except ValueError as err:
    raise Refused(f'{path} is not valid JSON ({err}); restore or delete '
                  'it') from None
  if not isinstance(value, dict):
    raise Refused(f'{path} holds a JSON {type(value).__name__}, not an '
                  'object; restore or delete it')
  return value

def write_file(workdir, name, data: str | bytes):
  """workdir/name, whole or not at all, by process 0, while it owns the
  workdir (LockLost otherwise)."""
  if is_writer():
    check_owner(workdir)
    storage.write_atomic(storage.join(workdir, name), data)


def write_json(workdir, name, obj):
  write_file(workdir, name, json.dumps(obj, indent=2))


def set_status(workdir, state: str, step: int, message: str = '',
               checkpoint: int | None = None, any_process: bool = False):
  """status.json: the state, the last step reached, the run's commit point
  (`checkpoint`: the step of its last finished checkpoint, None before the
  first) and when (heartbeat). `any_process`: written by this process even
  if it is not process 0 (a run whose process 0 was lost)."""
  status = {'state': state, 'step': int(step), 'message': message,
            'checkpoint': checkpoint, 'time': time.time(),
            'heartbeat': time.time()}
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
      row = json.loads(line)
    except ValueError:
      if i < len(lines) - 1:
        raise Refused(f'{path}, line {i + 1}: not a JSON row '
                      f'({line[:60]!r}); repair or delete it') from None
      print(f'[cgjax] warning: {path}: dropped a torn last line '
            f'({line[:60]!r})', flush=True)
      if repair and is_writer():
        storage.write_atomic(path, ''.join(lines[:i]))
      continue
    if not _is_row(row):
      raise Refused(f'{path}, line {i + 1}: not a metric row {{"step": int, '
                    f'"name": str, "value": number}} ({line[:60]!r}); repair '
                    'or delete it')
    rows.append(row)
  return rows


def _is_row(row) -> bool:
  return (isinstance(row, dict) and isinstance(row.get('step'), int)
          and isinstance(row.get('name'), str)
          and isinstance(row.get('value'), (int, float))
          and not isinstance(row.get('value'), bool))


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


def hparam_values(flat: dict) -> dict:
  """Config fields as HParams values: a tuple field one hparam per element
  (`optim.step_boundaries[0]`: numbers stay sortable and filterable, not the
  text '(0.5, 0.75)'), None and an empty tuple as text. Integers are numbers;
  HParams has one numeric type, float64, exact for them (4000 shows as 4000)."""
  values = {}
  for key, value in flat.items():
    if isinstance(value, (tuple, list)) and value:
      values.update(hparam_values(
          {f'{key}[{i}]': v for i, v in enumerate(value)}))
    elif isinstance(value, (bool, int, float, str)):
      values[key] = value
    else:
      values[key] = str(value)
  return values


class MetricWriter:
  """Scalars to metrics.jsonl, TensorBoard and the config's trackers
  (cgjax.trackers; process 0 only).

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
               redo_step: int | None = None, trackers=()):
    self._active = is_writer()
    self._trackers = list(trackers)  # cgjax.trackers: the same scalars
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
    TensorBoard names the run by its workdir). tensorboardX writes in a
    thread that dies on an OSError (a full disk), after which its queue
    fills and every further scalar blocks forever (seen: a run hung at step
    3 of a full tmpfs): an OSError naming the workdir instead, checked at
    each call."""
    if self._tb is not None and not self._events_alive():
      raise OSError(errno.ENOSPC if _disk_full(self._workdir) else errno.EIO,
                    'the TensorBoard event writer stopped (it could not '
                    'write)', self._staging or self._workdir)
    if self._tb is None:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      # A deep queue: a put never waits on the writer thread, whose death
      # is checked before each one.
      self._tb = SummaryWriter(self._staging or self._workdir,
                               purge_step=self._purge_step, max_queue=100_000)
    return self._tb

  def write(self, step: int, scalars: dict):
    if not self._active:
      return
    lines = ''.join(json.dumps({'step': int(step), 'name': name,
                                'value': float(value)}) + '\n'
                    for name, value in sorted(scalars.items()))
    for name, value in sorted(scalars.items()):
      self._events().add_scalar(name, float(value), int(step))
    for tracker in self._trackers:
      tracker.write(int(step), {k: float(v) for k, v in scalars.items()})
    if self._local:
      check_owner(self._workdir)
      try:
        self._file.write(lines)
        self._file.flush()
      except OSError as err:  # name the file (a file object's error does not)
        raise OSError(err.errno, err.strerror, self._path) from None
      return
    self._pending.append((int(step), lines))
    if time.time() - self._flushed_at >= self.FLUSH_SECONDS:
      self.flush()

  def write_config(self, flat: dict, headline: list[str]):
    """The resolved config to TensorBoard: a text table, and every field as
    an hparam of the HParams tab (see hparam_values), with the
    measurements' headline metrics as its metric columns."""
    if not self._active:
      return
    events = self._events()
    events.add_text('config', '\n'.join(
        f'    {k} = {v!r}' for k, v in sorted(flat.items())), 0)
    hparams = hparam_values(flat)
    # tensorboardX's add_hparams opens a second writer in the same folder,
    # whose file name collides with this one's within the same second (the
    # records were lost); the three hparams summaries go through this writer.
    from tensorboardX.summary import hparams as hparams_summaries  # pylint: disable=g-import-not-at-top
    file_writer = events._get_file_writer()  # pylint: disable=protected-access
    for summary in hparams_summaries(hparams, dict.fromkeys(headline, 0.0)):
      file_writer.add_summary(summary, 0)

  def flush(self):
    """TensorBoard (and, on an object store, the rows since the last flush)
    written out: at each checkpoint, so a resume finds everything up to it."""
    if not self._active:
      return
    if self._tb is not None:
      self._tb.flush()
    for tracker in self._trackers:
      tracker.flush()
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

  def _events_alive(self) -> bool:
    worker = self._tb._get_file_writer().event_writer._worker  # pylint: disable=protected-access
    return worker is None or worker.is_alive()

  def close(self):
    if not self._active:
      return
    # (tensorboardX closes its writer again at exit; one that could not
    # write, a full disk, printed that failure's traceback then: disarmed.)
    events = self._tb and self._tb.file_writer
    try:
      if self._tb is not None and self._events_alive():  # else close blocks
        self._tb.close()
    finally:
      if events is not None:
        events.event_writer.close = lambda: None
    try:
      self.flush()
    finally:
      for tracker in self._trackers:
        tracker.close()
    if self._local:
      self._file.close()
    else:
      shutil.rmtree(self._staging, ignore_errors=True)


def _disk_full(path: str) -> bool:
  try:
    return os.statvfs(path).f_bavail == 0
  except OSError:
    return False


class RecordsAtRisk(Refused):
  """A relaunch would shorten a run's records: refused, nothing written."""


def committed_step(status: dict) -> int | None:
  """The run's commit point as status.json records it: the step of its last
  finished checkpoint, None where none finished (a finished run of an
  earlier version, which recorded none, committed its last step)."""
  if 'checkpoint' in status:
    return status['checkpoint']
  return status.get('step') if status.get('state') == 'done' else None


def check_records(workdir: str, checkpoint_steps: list[int]):
  """Refuses (RecordsAtRisk) a relaunch that would replace a run's records
  with fewer, on evidence only: a checkpoint the run committed is gone (a
  fresh start would rewrite metrics.jsonl from step 0, a resume from an
  older one would drop rows the run had committed), or the run has
  checkpoints but no metrics (a resume would keep only the rows after the
  checkpoint). Rows and files that a crash left past the commit point are
  no evidence: the relaunch drops them."""
  committed = committed_step(read_status_file(workdir))
  how = ('relaunch with --restart (it moves the old records to '
         'WORKDIR/restart_N/ and starts over)')
  if checkpoint_steps and not has_metrics(workdir):
    raise RecordsAtRisk(
        f'{storage.join(workdir, "metrics.jsonl")} is missing but the run has '
        f'checkpoints up to step {max(checkpoint_steps)}: resuming would keep '
        f'only the rows after it; restore the file, or {how}')
  if committed is not None and max(checkpoint_steps, default=-1) < committed:
    found = (f'the newest is step {max(checkpoint_steps)}' if checkpoint_steps
             else f'{storage.join(workdir, "checkpoints")} is missing or '
             'empty')
    raise RecordsAtRisk(
        f'{workdir} holds a run whose checkpoint of step {committed} is gone '
        f'({found}): a relaunch would replace its records with fewer; '
        f'restore the checkpoints, or {how}')


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

