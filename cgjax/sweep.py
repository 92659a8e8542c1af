"""Sweeps: every trial of a config's `get_sweep(arg)`, one workdir each.

A config module may define `get_sweep(arg) -> list[dict]`, one dict of config
overrides per trial (e.g. `{'noise.rate': 0.25}`); the key 'arg' adds to the
config's own arg instead, for settings that change several fields together
(e.g. `{'arg': 'optimizer=m3'}`: M3's batch, momentum and lr). Each trial
is an ordinary `launch.py` run in `SWEEP_DIR/<trial name>`, started as its
own process (so a sweep is just those commands: `--print-commands` hands them
to a cluster scheduler instead). Relaunching a sweep skips the trials whose status.json
says 'done' and resumes the others from their checkpoints.
"""
import contextlib
import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time

from cgjax import progress
from cgjax import storage
from cgjax import workdir as workdir_lib


ARG = 'arg'


def trial_name(overrides: dict) -> str:
  """{'noise.rate': 0.25, 'seed': 1} -> 'noise.rate=0.25,seed=1'
  ({'arg': 'optimizer=m3'} -> 'optimizer=m3')."""
  if not overrides:
    return 'default'
  return ','.join(str(v) if k == ARG else f'{k}={v}'
                  for k, v in overrides.items()).replace('/', '_')


def trial_spec(config_spec: str, overrides: dict) -> str:
  """The config spec with the trial's 'arg' appended to its arg."""
  if ARG not in overrides:
    return config_spec
  return config_spec + (',' if ':' in config_spec else ':') + overrides[ARG]


def _check(trials) -> list[dict]:
  if not isinstance(trials, (list, tuple)) or not trials:
    raise ValueError(f'get_sweep() must return a non-empty list of override '
                     f'dicts, got {trials!r}')
  for t in trials:
    if not isinstance(t, dict):
      raise ValueError(f'get_sweep() trial {t!r} is not a dict of overrides')
  names = [trial_name(t) for t in trials]
  if len(set(names)) != len(names):
    raise ValueError(f'get_sweep() repeats a trial: {names}')
  return list(trials)


def load_trials(module, arg) -> list[dict]:
  if not hasattr(module, 'get_sweep'):
    raise ValueError(f'{module.__file__} defines no get_sweep(arg); add one '
                     'returning a list of override dicts to use --sweep')
  return _check(module.get_sweep(arg or None))


def _format(value) -> str:
  if isinstance(value, (tuple, list)):
    return '(' + ','.join(map(str, value)) + (',)' if len(value) == 1 else ')')
  return str(value)


def commands(launch: str, config_spec: str, trials: list[dict],
             sweep_dir: str, extra_flags: list[str]
             ) -> list[tuple[str, list[str]]]:
  """(workdir, argv) of each trial: `launch` with the trial's overrides."""
  out = []
  for t in trials:
    workdir = storage.join(sweep_dir, trial_name(t))
    argv = [sys.executable, launch, '--config', trial_spec(config_spec, t),
            '--workdir', workdir, *extra_flags,
            *[f'--config.{k}={_format(v)}' for k, v in t.items() if k != ARG]]
    out.append((workdir, argv))
  return out


# Trial states a relaunched sweep leaves alone (unless retry_failed for the
# last two): finished, or ended by an error a rerun would repeat.
FINAL = ('done', 'failed', 'diverged')


PROGRESS_SECONDS = 60  # between the sweep's lines on its running trials
# A driver of a pod-wide sweep whose trial process ended waits at most this
# long for process 0 of the trial to write the trial's final status.
STATUS_WAIT_SECONDS = 60


@dataclasses.dataclass(frozen=True)
class Cluster:
  """This sweep driver's place in a pod-wide sweep: every worker runs the
  same sweep command, and trial k is one jax.distributed job over all of
  them. `coordinator` ('' where the cluster is auto-detected: a TPU pod,
  SLURM) is host:port; trial k's coordinator listens on port + k, so a
  trial never meets the coordinator of the one before while it shuts
  down."""
  process_id: int
  num_processes: int
  coordinator: str = ''

  def flags(self, index: int) -> list[str]:
    if not self.coordinator:
      return []  # each trial process detects the cluster itself
    host, port = self.coordinator.rsplit(':', 1)
    return [f'--coordinator_address={host}:{int(port) + index}',
            f'--num_processes={self.num_processes}',
            f'--process_id={self.process_id}']


def gpu_slots(parallel: int, devices_per_trial: int,
              environ=os.environ) -> list[dict]:
  """The environment of each of `parallel` trial slots on this host: a
  disjoint set of its GPUs (CUDA_VISIBLE_DEVICES) and a memory fraction, so
  that trials side by side neither see nor preallocate each other's
  memory. [{}] * parallel on a host without GPUs; a ValueError where the
  devices cannot be split (a TPU host) or are too few."""
  if devices_per_trial < 0:
    raise ValueError(f'--devices_per_trial must be >= 0 (0: all GPUs / '
                     f'--parallel), got {devices_per_trial}')
  if parallel == 1 and not devices_per_trial:
    return [{}]
  visible = environ.get('CUDA_VISIBLE_DEVICES')
  if visible is not None:
    gpus = [g for g in visible.split(',') if g.strip()]
  else:
    gpus = _nvidia_gpus()
  if not gpus:
    if parallel > 1 and (os.path.exists('/dev/accel0')
                         or os.path.exists('/dev/vfio/0')
                         or environ.get('TPU_ACCELERATOR_TYPE')):
      raise ValueError(f'--parallel {parallel} on a TPU host: one process '
                       "owns all of a host's TPU chips, which cannot be "
                       'split between trials; use --parallel 1 (or one host '
                       'per trial with --print-commands)')
    if devices_per_trial:
      raise ValueError(f'--devices_per_trial={devices_per_trial}: this host '
                       'has no GPUs (CUDA_VISIBLE_DEVICES and nvidia-smi '
                       'list none)')
    return [{}] * parallel
  per_trial = devices_per_trial or len(gpus) // parallel
  if per_trial < 1 or per_trial * parallel > len(gpus):
    raise ValueError(
        f'--parallel {parallel} with {per_trial or "no"} GPU(s) per trial '
        f'needs {parallel * max(per_trial, 1)} GPUs; this host has '
        f'{len(gpus)} ({",".join(gpus)}): lower --parallel or '
        '--devices_per_trial')
  fraction = environ.get('XLA_PYTHON_CLIENT_MEM_FRACTION', '0.9')
  return [{'CUDA_VISIBLE_DEVICES': ','.join(gpus[i * per_trial:
                                                 (i + 1) * per_trial]),
           'XLA_PYTHON_CLIENT_MEM_FRACTION': fraction}
          for i in range(parallel)]


def _nvidia_gpus() -> list[str]:
  try:
    out = subprocess.run(['nvidia-smi', '--query-gpu=index',
                          '--format=csv,noheader'], capture_output=True,
                         text=True, timeout=30, check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return []
  return [line.strip() for line in out.splitlines() if line.strip()]


def _last_progress(log_path: str) -> str:
  """The last progress line ('step a/b (x%) | ... | ETA ...') of a trial's
  log, without its '[cgjax] ' prefix; '' if none yet."""
  try:
    with open(log_path, 'rb') as f:
      f.seek(max(os.path.getsize(log_path) - 65536, 0))
      lines = f.read().decode(errors='replace').splitlines()
  except OSError:
    return ''
  found = [l for l in lines if ' | ETA ' in l]
  return found[-1].removeprefix('[cgjax] ') if found else ''


class _Claims:
  """Which driver of a sweep runs which trial: SWEEP_DIR/.claims/TRIAL, a
  cgjax.workdir.Lock per trial, taken before the trial starts (and before
  its log is opened), released when it ends. Identical drivers started
  together so share the trials, each run by exactly one of them, and wait
  for the others' (a claim whose driver died is stale and taken over). Off
  in a pod-wide sweep, whose drivers run every trial together."""

  STALE_AFTER = 120.0  # a claim's heartbeat is refreshed every 10 s

  def __init__(self, sweep_dir: str, enabled: bool):
    self._dir = storage.join(sweep_dir, '.claims')
    self._enabled, self._held = enabled, {}

  def _path(self, workdir: str) -> str:
    return storage.join(self._dir, storage.basename(workdir))

  def take(self, workdir: str) -> bool:
    """Whether this driver now holds the trial (False: another one does)."""
    if not self._enabled:
      return True
    try:
      self._held[workdir] = workdir_lib.Lock(
          self._path(workdir), self.STALE_AFTER, writer=True).acquire()
    except workdir_lib.Locked:
      return False
    return True

  def release(self, workdir: str):
    lock = self._held.pop(workdir, None)
    if lock is not None:
      lock.release()

  def held_elsewhere(self, workdir: str) -> bool:
    return self._enabled and workdir_lib.owner_of(
        self._path(workdir), self.STALE_AFTER) is not None


class _TrialLog:
  """A trial's output: WORKDIR/log.txt (log.processI.txt for process I > 0
  of a pod-wide sweep). Appended to where the workdir is local; on an object
  store written to a local file (continuing the one there) and copied up
  whole every PROGRESS_SECONDS and at the end."""

  def __init__(self, workdir: str, process_id: int):
    name = 'log.txt' if process_id == 0 else f'log.process{process_id}.txt'
    self.path = storage.join(workdir, name)
    if storage.is_local(workdir):
      self.local = self.path
    else:
      fd, self.local = tempfile.mkstemp(prefix='cgjax-trial-', suffix='.txt')
      with os.fdopen(fd, 'wb') as f:
        if storage.exists(self.path):
          f.write(storage.read_bytes(self.path))
    self.file = open(self.local, 'ab')  # pylint: disable=consider-using-with

  def sync(self):
    if self.local != self.path:
      self.file.flush()
      storage.upload(self.local, self.path)

  def close(self):
    self.file.close()
    if self.local != self.path:
      storage.upload(self.local, self.path)
      os.remove(self.local)


def _final_status(workdir: str, cluster: Cluster | None) -> str:
  """The trial's state once its process ended. In a pod-wide sweep process
  0 of the trial writes it, possibly after this driver's own process ended:
  wait for a state other than running."""
  state = workdir_lib.read_status(workdir)
  deadline = time.time() + (STATUS_WAIT_SECONDS if cluster else 0)
  while state in ('running', 'new') and time.time() < deadline:
    time.sleep(1.0)
    state = workdir_lib.read_status(workdir)
  return state


def run(launch: str, config_spec: str, trials: list[dict], sweep_dir: str,
        extra_flags: list[str], parallel: int = 1,
        retry_failed: bool = False, cluster: Cluster | None = None,
        devices_per_trial: int = 0) -> dict[str, str]:
  """Runs the unfinished trials, `parallel` at a time; returns their states.

  Skipped: done trials; failed and diverged ones unless `retry_failed`; on
  one host, a trial whose workdir lock has a live owner (started by another
  sweep or by hand: never run twice). Each trial's output goes to
  WORKDIR/log.txt; stdout gets each running trial's latest progress line
  every PROGRESS_SECONDS, a line per finished trial with the sweep's ETA
  (the remaining trials at the rate trials have finished), and a summary.

  With `cluster` (a pod-wide sweep) every worker's driver takes the same
  decisions from the shared sweep dir alone: status.json, never a lock's
  liveness, which each host would judge differently. Trials run one at a
  time over all workers, and the sweep stops at the first trial that does
  not end done. With GPUs, each of the `parallel` trials gets
  `devices_per_trial` of them (default: all / parallel).
  """
  if parallel < 1:
    raise ValueError(f'--parallel must be >= 1, got {parallel}')
  if cluster and parallel > 1:
    raise ValueError(f'--parallel {parallel} with a multi-process sweep: '
                     "each trial already runs on every process's devices")
  slots = gpu_slots(parallel, devices_per_trial)
  writer = cluster is None or cluster.process_id == 0
  process_id = cluster.process_id if cluster else 0
  if writer:
    storage.makedirs(sweep_dir)
  todo = commands(launch, config_spec, trials, sweep_dir, extra_flags)
  if cluster:
    todo = [(w, argv + cluster.flags(i)) for i, (w, argv) in enumerate(todo)]
  if writer:
    storage.write_atomic(storage.join(sweep_dir, 'sweep.json'), json.dumps(
        {'config': config_spec, 'flags': extra_flags, 'trials': [
            {'name': trial_name(t), 'overrides': t, 'workdir': w}
            for t, (w, _) in zip(trials, todo)]}, indent=1))
  states, pending = {}, []
  claims = _Claims(sweep_dir, enabled=cluster is None)
  for workdir, argv in todo:
    state = workdir_lib.read_status(workdir)
    owner = None if cluster or claims.held_elsewhere(workdir) else (
        workdir_lib.owner_of(workdir, stale_after=_stale_after(workdir)))
    if state in FINAL and (state == 'done' or not retry_failed):
      states[workdir] = state
      print(f'[sweep] {storage.basename(workdir)}: {state} already, skipped'
            + ('' if state == 'done' else ' (--retry_failed reruns it)'),
            flush=True)
    elif owner is not None:  # a run started by hand, or by another sweep
      states[workdir] = 'running elsewhere'
      print(f'[sweep] {storage.basename(workdir)}: running (pid '
            f'{owner["pid"]} on {owner["host"]}), skipped', flush=True)
    else:
      pending.append((workdir, argv))
  driver = _Driver(pending, slots, process_id, cluster, claims, states,
                   retry_failed)
  with _forwarded_signals(driver.running) as stop:
    driver.drive(stop)
  for workdir, state in states.items():
    print(f'[sweep]   {storage.basename(workdir)}: {state}', flush=True)
  if stop:
    raise Stopped(stop[0])
  return states


class Stopped(Exception):
  """SIGTERM / SIGINT reached the sweep driver: its running trials got it
  too, checkpointed and stopped; relaunching the sweep resumes them."""

  def __init__(self, signum: int):
    name = signal.Signals(signum).name
    super().__init__(f'{name}: the running trials checkpointed and stopped; '
                     'relaunch the same command to resume them')
    self.exit_code = 75 if signum == signal.SIGTERM else 130


@contextlib.contextmanager
def _forwarded_signals(running: dict):
  """A list that SIGTERM / SIGINT append to, each also sent on to every
  running trial (which checkpoints and exits 75 / 130): the driver starts
  no further trial and returns once they are gone, instead of dying and
  leaving them running as orphans."""
  stop = []
  if threading.current_thread() is not threading.main_thread():
    yield stop
    return

  def forward(signum, frame):
    del frame
    stop.append(signum)
    for proc, _, _ in running.values():
      if proc.poll() is None:
        proc.send_signal(signum)

  previous = {n: signal.signal(n, forward)
              for n in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield stop
  finally:
    for n, handler in previous.items():
      signal.signal(n, handler)


def _stale_after(workdir: str) -> float:
  """The trial's lock_stale_after (its config.json; the default before it
  wrote one): a lock whose heartbeat is older is nobody's, as for launch."""
  try:
    return float(workdir_lib.read_config(workdir).get('lock_stale_after',
                                                       120.0))
  except (ValueError, OSError):
    return 120.0


class _Driver:
  """The sweep's loop: each pending trial claimed and started into a free
  slot (or, claimed by another driver, waited for), progress lines, the end
  of each; no new trial once a signal came."""

  def __init__(self, pending, slots, process_id, cluster, claims, states,
               retry_failed):
    self.pending, self.slots, self.states = pending, slots, states
    self.retry_failed = retry_failed
    self.process_id, self.cluster, self.claims = process_id, cluster, claims
    self.running = {}  # workdir -> (process, log, slot)
    self.waiting = []  # (workdir, argv) claimed by another driver
    self.free = list(range(len(slots)))
    self.total, self.finished = len(pending), 0
    self.t0 = self.last_report = time.time()

  def drive(self, stop):
    while (self.pending or self.waiting) and not stop or self.running:
      while self.pending and self.free and not stop:
        self._start(*self.pending.pop(0))
      time.sleep(0.5)
      if time.time() - self.last_report >= PROGRESS_SECONDS:
        self._report()
      for workdir, (proc, log, slot) in list(self.running.items()):
        if proc.poll() is not None:
          self._ended(workdir, proc, log, slot)
      self._check_waiting()
    for later, _ in self.pending:  # left by a signal
      self.states.setdefault(later, 'not started')
    for later, _ in self.waiting:
      self.states.setdefault(later, 'running elsewhere')

  def _start(self, workdir, argv):
    name = storage.basename(workdir)
    if not self.claims.take(workdir):
      print(f'[sweep] {name}: run by another driver of this sweep; waiting '
            'for it', flush=True)
      self.waiting.append((workdir, argv))
      return
    state = workdir_lib.read_status(workdir)
    if state in FINAL and (state == 'done' or not self.retry_failed):
      self.claims.release(workdir)  # ended by another driver meanwhile
      self.states[workdir] = state
      print(f'[sweep] {name}: {state} (run by another driver)', flush=True)
      return
    storage.makedirs(workdir)
    slot = self.free.pop(0)
    log = _TrialLog(workdir, self.process_id)
    verb = 'resuming' if state != 'new' else 'starting'
    devices = ''.join(f' {k}={v}' for k, v in self.slots[slot].items())
    print(f'[sweep] {verb} {name}' + (f' with{devices}' if devices else ''),
          flush=True)
    self.running[workdir] = (subprocess.Popen(
        argv, stdout=log.file, stderr=subprocess.STDOUT,
        env={**os.environ, **self.slots[slot]}), log, slot)

  def _report(self):
    for workdir, (_, log, _) in self.running.items():
      log.sync()
      line = _last_progress(log.local)
      if line:
        print(f'[sweep] {storage.basename(workdir)}: {line}', flush=True)
    self.last_report = time.time()

  def _ended(self, workdir, proc, log, slot):
    log.close()
    del self.running[workdir]
    self.free.append(slot)
    self.finished += 1
    self.states[workdir] = _final_status(workdir, self.cluster)
    self.claims.release(workdir)
    elapsed = time.time() - self.t0
    # Trials finish at this rate, `parallel` at a time.
    eta = elapsed / self.finished * max(self.total - self.finished, 0)
    print(f'[sweep] {self.finished}/{self.total} {storage.basename(workdir)}: '
          f'{self.states[workdir]} (exit {proc.returncode}; '
          f'{progress.duration(elapsed)} so far, sweep ETA '
          f'{progress.duration(eta)}; log {log.path})', flush=True)
    if self.cluster and self.states[workdir] != 'done':
      for later, _ in self.pending:  # every worker stops here, on one trial
        self.states[later] = 'not started'
      print(f'[sweep] stopping: {storage.basename(workdir)} ended '
            f'{self.states[workdir]}', flush=True)
      self.pending.clear()

  def _check_waiting(self):
    """A trial whose driver let it go: its end where it ended, else (that
    driver stopped first) run here."""
    for workdir, argv in list(self.waiting):
      if self.claims.held_elsewhere(workdir):
        continue
      self.waiting.remove((workdir, argv))
      self.pending.append((workdir, argv))  # _start: ended, or run here


def shell_command(argv: list[str]) -> str:
  """argv as one shell line: this interpreter, absolute paths, so it runs
  from any directory (a SLURM array's, a pod worker's)."""
  return shlex.join(argv)


def status_lines(workdirs: list[str]) -> list[str]:
  """Each trial's state and step from its status.json: what a sweep (a
  SLURM array, a pod) did, read from the sweep dir alone."""
  lines = []
  for workdir in workdirs:
    status = workdir_lib.read_status_file(workdir)
    step = status.get('step')
    lines.append(f'{storage.basename(workdir)}: {status["state"]}'
                 + (f' at step {step}' if step is not None else '')
                 + (f' ({status["message"]})' if status.get('message') else ''))
  return lines

