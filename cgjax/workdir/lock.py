"""lock.json: the one live owner of a workdir, fenced by a token.

Taken before anything else is written and released at exit; every write of
a run's files re-checks the token (`check_owner`), so a process that was
suspended past `lock_stale_after` and taken over never writes again.
"""
import json
import os
import socket
import sys
import threading
import time
import uuid

import jax

from cgjax import storage


def is_writer() -> bool:
  """Process 0 writes the plain files of a run (orbax coordinates its own)."""
  return jax.process_index() == 0


class Refused(ValueError):
  """A launch that the workdir's contents refuse: raised before the launch
  writes anything (status, lock, config and records stay as they were)."""


class Locked(Refused):
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

  def __init__(self, workdir: str, stale_after: float,
               writer: bool | None = None):
    """`writer`: whether this process takes it (default: process 0 of the
    run; a sweep driver, which starts no JAX backend, says so itself)."""
    self._writer = writer
    self._workdir = workdir
    self._path = storage.join(workdir, 'lock.json')
    self._stale_after = stale_after
    self._stop = threading.Event()
    self._thread = None
    self.owner = {'host': socket.gethostname(), 'pid': os.getpid(),
                  'pid_start': _started_at(os.getpid()), 'start': time.time(),
                  'token': uuid.uuid4().hex}

  def acquire(self):
    if not (is_writer() if self._writer is None else self._writer):
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
    try:
      held = _read_lock(self._path)
    except Refused:  # overwritten by hand: not ours any more either
      held = None
    if held is None or held.get('token') != self.owner['token']:
      other = ('nobody (it was released by the run that took it over)'
               if held is None else
               f'pid {held.get("pid")} on {held.get("host")}')
      raise LockLost(f'{self._path} now belongs to {other}: this process '
                     f'(pid {os.getpid()}) was stopped for longer than '
                     f'lock_stale_after={self._stale_after:g} s and the run '
                     'was taken over; stopping without writing')

  def _beat(self):
    failing = False
    while not self._stop.wait(self.HEARTBEAT):
      try:
        self.check()  # never overwrite the lock of the run that took over
        storage.write_atomic(self._path, self._text())
      except LockLost:
        return  # the main thread stops at its next write
      except OSError as err:  # e.g. a full disk: the run itself reports it
        if not failing:  # once per streak, not every HEARTBEAT
          print(f'[cgjax] warning: cannot refresh {self._path}: {err}',
                file=sys.stderr, flush=True)
        failing = True
        continue
      failing = False

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
  """lock.json's owner; None where there is none or it is torn (a crash
  mid-write: nobody can own it); Refused, naming the file, for JSON that is
  no lock (a hand edit), which is nobody's to take over silently."""
  try:
    held = json.loads(storage.read_text(path))
  except FileNotFoundError:
    return None
  except ValueError:
    return None
  fields = {'host': str, 'pid': int, 'heartbeat': (int, float)}
  if not isinstance(held, dict) or any(
      not isinstance(held.get(k), t) or isinstance(held.get(k), bool)
      for k, t in fields.items()):
    raise Refused(f'{path} is not a lock of cgjax (an object with host, pid '
                  f'and heartbeat; it holds {json.dumps(held)[:80]}): delete '
                  'it if no run uses the workdir')
  return held


def owner_of(workdir: str, stale_after: float) -> dict | None:
  """The live owner recorded in workdir/lock.json, or None (no lock, or a
  stale one, which is then reported as taken over)."""
  held = _read_lock(storage.join(workdir, 'lock.json'))
  if held is None:
    return None
  age = time.time() - held['heartbeat']
  dead = (held['host'] == socket.gethostname()
          and not _alive(held['pid'], held.get('pid_start')))
  return None if dead or age > stale_after else held

