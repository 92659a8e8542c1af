"""RunSession: the one object that owns a run, from its lock to its last
status.

It holds the lock, status.json, the records (metrics, TensorBoard, the
measurements' per-example files), the checkpointer, the measurements and
the stop requests, and ends every run through one exit path (`__exit__`):
done, stopped (SIGTERM / SIGINT), diverged, failed, or refused. The train
loop (cgjax/train.py) only calls it.

The commit point of a run is its last finished checkpoint. Rows and files
written past it are provisional: a relaunch after a crash at any moment
drops them and recomputes them from that checkpoint, or from scratch where
none ever finished, so its records equal an uninterrupted run's. A launch
that is refused (another run's config, a missing committed checkpoint, a
file that is not what it should be, a live owner) writes nothing.
"""
import signal
import threading
import time

import jax
import numpy as np

from cgjax import coherence
from cgjax import measurements as measurements_lib
from cgjax import parallel
from cgjax import progress
from cgjax import stops
from cgjax import storage
from cgjax import trackers as trackers_lib
from cgjax import workdir as workdir_lib

# A progress line at least this often (besides log_every's, which also
# write train/ metrics).
PROGRESS_SECONDS = 30


def log(*args):
  if workdir_lib.is_writer():
    print('[cgjax]', *args, flush=True)


class Diverged(FloatingPointError):
  """The training loss, the params, or a value that its measurement checks
  (`diverges`) became NaN or inf."""

  def __init__(self, step: int, what: str):
    super().__init__(f'training diverged at step {step}: {what}')
    self.step, self.what = step, what


class Stopped(Exception):
  """SIGTERM (preemption) or SIGINT: the run checkpointed its current step
  and stopped; relaunching resumes it. `exit_code`: 75 (EX_TEMPFAIL) for
  SIGTERM, 130 for SIGINT, as launch.py exits."""

  def __init__(self, state: str, step: int, exit_code: int,
               note: str = 'checkpointed; relaunch to resume'):
    super().__init__(f'{state} at step {step}: {note.split(";")[0]}; '
                     'relaunch the same command to resume')
    self.state, self.step, self.exit_code, self.note = (state, step,
                                                        exit_code, note)


class RunSession:
  """One training run of `config` in `workdir`.

      with RunSession(config, workdir, ctx, measurements) as run:
        state, start = run.begin(initial_state)
        for step ...:
          state, metrics = train_step(state, batch)
          run.record_loss(step, metrics['loss'], lr)
          ...
      run.final_values()

  Entering takes the lock and checks the workdir (raising Refused with
  nothing written); `begin` restores the last checkpoint that restores (or
  starts at 0) and drops the provisional records past it.
  """

  def __init__(self, config, workdir: str, ctx, measurements,
               restart: bool = False):
    self.config, self.workdir, self.ctx = config, workdir, ctx
    self.measurements, self._restart = measurements, restart
    self.step = -1  # the last step reached
    self.last = {}  # the last value of each metric of this launch
    self._lock = self._writer = self._checkpointer = self._tracker = None
    self._resuming, self._committed, self._start = False, None, 0
    self._losses = []  # the loss since the last log line (checkpointed)
    self._created, self._handlers = False, {}
    self._last_line = time.perf_counter()

  # -- entry: lock and checks, nothing written before they pass --

  def __enter__(self):
    stops.check_before_writing()
    if threading.current_thread() is threading.main_thread():
      self._handlers = {s: signal.getsignal(s) for s in stops.SIGNALS}
    if jax.process_count() > 1:
      stops.multi_process()
    else:
      stops.install()
    self._created = not storage.exists(self.workdir)
    parallel.PEER_LOST_HOOKS.append(self._peer_lost)
    try:
      check_kind(self.workdir)
      self._lock = workdir_lib.Lock(self.workdir,
                                    self.config.lock_stale_after).acquire()
      self._check_workdir()
    except BaseException:
      self._release()
      raise
    return self

  def _check_workdir(self):
    """Refuses, writing nothing, a workdir of another run or whose committed
    records a relaunch would shorten; reads every record it keeps. Process
    0 judges, and tells the others (which would otherwise see its first
    writes half done: a checkpoints/ dir without config.json)."""
    refusal, resuming = None, False
    if workdir_lib.is_writer():
      try:
        resuming = self._judge_workdir()
      except workdir_lib.Refused as err:
        refusal = err
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      told = multihost_utils.broadcast_one_to_all(
          np.array([refusal is not None, resuming], np.int32))
      if refusal is None and told[0]:
        refusal = workdir_lib.Refused(
            f'process 0 refused to launch {self.workdir} (its error line '
            'says why)')
      resuming = bool(told[1])
    if refusal is not None:
      raise refusal
    self._resuming = resuming

  def _judge_workdir(self) -> bool:
    """Process 0's checks; whether the workdir holds this run already."""
    if self._restart:
      moved = workdir_lib.set_aside_records(self.workdir)
      if moved:
        log(f'--restart: moved the old records of {self.workdir} to {moved}')
    for name in workdir_lib.remove_litter(self.workdir):
      log(f'removed {name}, left by a write that died midway')
    if not _check_existing_run(self.workdir, self.config):
      return False
    self._committed = workdir_lib.committed_step(
        workdir_lib.read_status_file(self.workdir))
    return True

  # -- start: restore or begin afresh --

  def begin(self, state):
    """(state, start step): the newest checkpoint of this run that restores,
    else the given step-0 state. Drops the records past it, then writes the
    step-0 (or redone) measurements."""
    self._checkpointer = workdir_lib.Checkpointer(
        self.workdir, self.config.keep_checkpoints, self._committed)
    restored = self._restore(state) if self._resuming else None
    if restored is None and self._committed is not None:
      workdir_lib.check_records(self.workdir, [])  # every one set aside
    if not self._resuming:
      workdir_lib.write_config(self.workdir, self.config)
    redo = False
    if restored is not None:
      self._start, state, data_state, measured = restored
      assert data_state['next_step'] == int(state.step) == self._start
      self.measurements.load_state_dict(measured)
      self._losses = [np.float32(x) for x in data_state['interval_losses']]
      # A stop request interrupted the measurements of this step: they run
      # again first (their rows, if a crash left any, are replaced).
      redo = bool(data_state.get('measure_again'))
      self._committed = max(self._committed or -1, self._start)
      log(f'resuming {self.workdir} from step {self._start}')
    trackers = (trackers_lib.open_all(
        self.config.get('trackers', ()), self.workdir,
        coherence.flatten(self.config.to_dict(), sep='.'))
                if workdir_lib.is_writer() else [])
    self._writer = workdir_lib.MetricWriter(
        self.workdir, self._start if restored else -1,
        redo_step=self._start if redo else None, trackers=trackers)
    self.step = self._start
    self._status('running', self._start)
    self._tracker = progress.Progress(
        self.config.num_steps, self._start, self.measurements.schedules(),
        self._checkpoint_steps())
    flat = None if restored else self._describe(state)
    if restored is None or redo:
      note = (None if restored else
              'nothing to checkpoint yet; relaunch to start over')
      if self.measure(self._start, state):
        raise self.stopped(self._start, note)
      self.measurements.finalize(self.workdir)
    if flat is not None:  # HParams' columns: the headline metrics measured
      self._writer.write_config(
          flat, self.measurements.headline(self.last) + ['train/loss'])
    return state, self._start

  def _restore(self, state):
    """(step, state, data state, measurements' state) of the newest
    checkpoint of this run that restores, with a warning for each that does
    not or that another run saved (its fingerprint differs: e.g. copied in
    from another seed), each moved aside and kept; None where none is
    left."""
    abstract = abstract_state(state)
    identity = workdir_lib.fingerprint(self.config)
    checkpointer = self._checkpointer
    for step in checkpointer.steps():
      try:
        restored = (step,) + checkpointer.restore(
            step, abstract, bool(self.measurements.state_dict()))
        theirs = restored[2].get('fingerprint', identity)  # older: unmarked
        if theirs == identity:
          return restored
        why = (f'belongs to another run (config fingerprint {theirs}, this '
               f'run\'s {identity})')
      except Exception as err:  # pylint: disable=broad-except
        why = f'does not restore ({type(err).__name__}: {str(err)[:200]})'
      where = checkpointer.path(step)
      kept = checkpointer.set_aside(step)
      log(f'warning: checkpoint {where} {why}; moved to {kept}, trying the '
          'previous one')
    return None

  def _describe(self, state) -> dict:
    """The start of a run's log: resolved config (returned flat, for
    TensorBoard), parameters by layer group, devices, data and noise,
    measurements."""
    config, dataset, mesh = self.config, self.ctx.dataset, self.ctx.mesh
    flat = coherence.flatten(config.to_dict(), sep='.')
    log(f'config: {len(flat)} fields, resolved, in '
        f'{storage.join(self.workdir, "config.json")} and TensorBoard')
    sizes = {}
    for path, leaf in zip(self.ctx.param_paths,
                          jax.tree.leaves(state.params)):
      group = self.ctx.group_of(path)
      sizes[group] = sizes.get(group, 0) + leaf.size
    total = sum(sizes.values())
    log(f'model {config.model.name}: {total:,} parameters\n' + '\n'.join(
        f'    {group:24s} {n:>14,} {100 * n / total:6.1f}%'
        for group, n in sizes.items()))
    device = jax.devices()[0]
    log(f'{jax.device_count()} {device.platform} device(s) '
        f'({device.device_kind}), {jax.process_count()} process(es); mesh '
        f'{dict(mesh.shape)}')
    noise = dataset.noise
    extra = ''.join(f' (+ {name}: {len(split)})'
                    for name, split in dataset.extra_test.items())
    log(f'{dataset.name}: {len(dataset.train)} train / {len(dataset.test)} '
        f'test examples{extra}; noise {config.noise.kind} rate '
        f'{config.noise.rate}: {noise.num_selected} selected, '
        f'{noise.num_changed} labels changed')
    for line in self.measurements.describe():
      log(line)
    self._writer.write(0, {'noise/num_selected': noise.num_selected,
                           'noise/num_changed': noise.num_changed,
                           'data/train_examples': len(dataset.train),
                           'data/test_examples': len(dataset.test)})
    return flat

  def _checkpoint_steps(self) -> set[int]:
    every, start = self.config.checkpoint_every, self._start
    return set(range((start // every + 1) * every, self.config.num_steps + 1,
                     every)) | {self.config.num_steps}

  # -- each step --

  def record_loss(self, step: int, loss, schedule):
    """The step's loss: a train/ row (with the lr, `schedule(step - 1)`)
    every log_every steps, a progress line after the first step (its
    compile booked apart) and at least every PROGRESS_SECONDS; the commit
    point advanced when a save has finished."""
    self.step = step
    self._losses.append(loss)
    if self._checkpointer.poll():  # a save finished: the new commit point
      self._status('running', step)
    logged = (step % self.config.log_every == 0
              or step == self.config.num_steps)
    if not (logged or step == self._start + 1
            or time.perf_counter() - self._last_line >= PROGRESS_SECONDS):
      return
    mean = float(np.mean(jax.device_get(self._losses)))
    self._tracker.point(step)
    if logged:
      self._losses = []
      if not np.isfinite(mean):
        raise Diverged(step, f'loss {mean}')
      self._write(step, {'train/loss': mean,
                         'train/steps_per_sec': self._tracker.rate() or 0.0,
                         'train/lr': float(schedule(step - 1))})
      self._status('running', step)
    log(self._tracker.line(step, mean))
    self._last_line = time.perf_counter()

  def measure(self, step: int, state) -> bool:
    """The step's measurements; True where a stop request interrupted them
    (nothing of them written)."""
    if not self.measurements.due(step):
      return False
    jax.block_until_ready(state)  # the queued train steps are training time
    try:
      scalars = self.measurements.run(state, step, log=log,
                                      timed=self._tracker.timed)
    except measurements_lib.Interrupted:
      log(f'step {step}: measurements interrupted by a stop request; they '
          'run again after the resume')
      return True
    self._write(step, scalars)
    bad = self.measurements.diverged(scalars)
    if bad:
      raise Diverged(step, ', '.join(f'{k} {scalars[k]}' for k in bad[:3]))
    return False

  def _write(self, step: int, scalars: dict):
    self._writer.write(step, scalars)
    self.last.update(scalars)

  def checkpoint_due(self, step: int) -> bool:
    return (step % self.config.checkpoint_every == 0
            or step == self.config.num_steps)

  def stop_requested(self, step: int) -> bool:
    """Whether to stop after this step (every process at the same step)."""
    if step >= self.config.num_steps:
      return False
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      return multihost_utils.reached_preemption_sync_point(step)
    return bool(stops.requested())

  def save(self, step: int, state, measure_again: bool = False):
    """Checkpoints `step`, its records written first: the checkpoint, once
    finished, commits every row up to it. Never a non-finite state on disk:
    the loss since the last log line and the params are checked first."""
    losses = jax.device_get(self._losses)
    if losses and not np.isfinite(np.mean(losses)):
      raise Diverged(step, f'loss {np.mean(losses)}')
    if not bool(_all_finite(state.params)):
      raise Diverged(step, 'non-finite parameters')
    with self._tracker.timed('checkpoint'):
      self.measurements.finalize(self.workdir)
      self._writer.flush()
      self._checkpointer.save(step, state, {
          'next_step': step,
          'fingerprint': workdir_lib.fingerprint(self.config),
          'measure_again': measure_again,
          'interval_losses': [float(x) for x in losses]},
                              self.measurements.state_dict())

  def stopped(self, step: int, note: str | None = None) -> Stopped:
    """The exception that ends the run at `step` for its stop request."""
    how, code = stops.requested() or stops.SIGNALS[signal.SIGTERM]
    return Stopped(how, step, code, note or 'checkpointed; relaunch to resume')

  # -- the one exit path --

  def __exit__(self, kind, err, traceback):
    try:
      if kind is None:
        self._end('done', self.config.num_steps)
        log(f'done: step {self.config.num_steps}, elapsed '
            f'{self._tracker.elapsed()} | time: {self._tracker.split()}')
      elif issubclass(kind, Stopped):
        self._end(err.state, err.step, err.note)
        log(f'{err.state} at step {err.step}: {err.note.split(";")[0]}, '
            f'exiting ({err.exit_code})')
      elif issubclass(kind, Diverged):
        self._end('diverged', err.step, err.what, last_good=True)
        err.args = (f'{err.args[0]}{self._last_good()}; lower optim.lr (now '
                    f'{self.config.optim.lr})',)
      elif not issubclass(kind, (workdir_lib.Refused, workdir_lib.LockLost)):
        parallel.check_peers()  # a collective fails at once when a peer died
        self._end('failed', max(self.step, 0),
                  f'{kind.__name__}: {err}', last_good=True)
    except workdir_lib.CheckpointFailed as failed:  # the last save failed
      self._end('failed', max(self.step, 0), str(failed), last_good=True)
      raise failed from None
    finally:
      self._release()
    return False

  def _end(self, state: str, step: int, message: str = '',
           last_good: bool = False):
    """Waits for the save in flight, closes the records and writes the final
    status; never raises for a workdir that cannot take it (full,
    read-only): the error that ended the run is the one reported."""
    closing = self._checkpointer
    self._checkpointer = None
    try:
      if closing is not None:
        closing.close()
        self._committed = closing.committed
    except workdir_lib.CheckpointFailed:
      if state in ('done', 'preempted', 'interrupted'):
        raise  # reported as the run's failure, by __exit__
      message += ' (and the last save failed)'
    finally:
      if self._writer is not None:
        try:
          self._writer.close()
        except OSError:
          pass
        self._writer = None
    if last_good:
      message += self._last_good()
    try:
      self._status(state, step, message)
    except OSError:  # the workdir itself is the problem (full, read-only)
      pass

  def _last_good(self) -> str:
    if self._committed is None:
      return '; no checkpoint was finished'
    return (f'; the last good checkpoint is step {self._committed} '
            f'({storage.join(self.workdir, "checkpoints", str(self._committed))})')

  def _status(self, state: str, step: int, message: str = ''):
    if self._checkpointer is not None:
      self._committed = self._checkpointer.committed
    workdir_lib.set_status(self.workdir, state, step, message,
                           checkpoint=self._committed)

  def _release(self):
    if self._peer_lost in parallel.PEER_LOST_HOOKS:
      parallel.PEER_LOST_HOOKS.remove(self._peer_lost)
    if self._lock is not None:
      self._lock.release()
      self._lock = None
    if (self._created and workdir_lib.is_writer()
        and storage.isdir(self.workdir) and not storage.listdir(self.workdir)):
      storage.rmtree(self.workdir)  # refused before writing: left as found
    stops.REQUESTS.clear()
    if threading.current_thread() is threading.main_thread():  # not the
      for signum, handler in self._handlers.items():  # lost-peer watcher
        if handler is not None:
          signal.signal(signum, handler)

  def _peer_lost(self, process, why):
    # Process 0 writes the status, or the next one where 0 is the lost one.
    if jax.process_index() == (1 if process == 0 else 0):
      workdir_lib.set_status(self.workdir, 'failed', self.step,
                             f'process {process} lost: {why}',
                             checkpoint=self._committed, any_process=True)
    self._release()
    return f' at step {self.step}'

  def final_values(self) -> dict:
    """The last value of each metric: of this launch, or of the records
    where the run was complete already."""
    if self._start == self.config.num_steps and workdir_lib.is_writer():
      log(f'{self.workdir} was already complete')
      return workdir_lib.latest_values(self.workdir)
    return self.last


def check_kind(workdir: str):
  """Refuses a workdir path that names something other than a folder."""
  if storage.exists(workdir) and not storage.isdir(workdir):
    raise workdir_lib.Refused(f'{workdir} is a file, not a workdir: give '
                              'a folder (new or a run\'s)')


def _check_existing_run(workdir: str, config) -> bool:
  """Whether `workdir` holds a run already (refusing another run's, or
  records a relaunch would shorten); reads every record it keeps."""
  if not workdir_lib.check_config(workdir, config):
    return False
  workdir_lib.check_records(workdir, workdir_lib.saved_steps(workdir))
  workdir_lib.read_metrics(workdir)  # every row readable
  return True


def check_launch(config, workdir: str, restart: bool = False) -> str:
  """Every check a launch makes of its workdir before its first write,
  writing nothing (`launch.py --check`): what the path is, the lock, and
  (without --restart) the run it holds. Raises Refused; returns what the
  launch would do."""
  check_kind(workdir)
  owner = workdir_lib.owner_of(workdir, config.lock_stale_after)
  if owner is not None:
    raise workdir_lib.Locked(f'{workdir}: the workdir is in use by pid '
                             f'{owner["pid"]} on {owner["host"]}; wait for '
                             'it or stop it')
  if restart:
    return 'would move the old records aside and start over'
  if _check_existing_run(workdir, config):
    return 'would resume the run it holds'
  return 'would start a new run'


def abstract_state(state):
  """Shapes, dtypes and shardings of `state`: what a checkpoint restores
  into."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
      state)


@jax.jit
def _all_finite(tree) -> jax.Array:
  return jax.numpy.all(jax.numpy.asarray(
      [jax.numpy.all(jax.numpy.isfinite(x)) for x in jax.tree.leaves(tree)]))
