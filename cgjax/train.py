"""The pure train step and the training loop.

Loop per update: one jitted `train_step(state, batch) -> (state, metrics)`
over the 'data' mesh, then whatever measurements `config.measurements` has
scheduled for that step (cgjax/measurements: evaluation, m-coherence probes,
learning times, ...), then an orbax checkpoint of the train state, the data
position and the measurements' own state. A relaunch with the same workdir
resumes from the last checkpoint and reproduces the uninterrupted run
(bitwise on CPU).
"""
import contextlib
import functools
import signal
import threading
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax.training import train_state

from cgjax import aggregators
from cgjax import coherence
from cgjax import data as data_lib
from cgjax import losses
from cgjax import measurements as measurements_lib
from cgjax import models
from cgjax import optim
from cgjax import parallel
from cgjax import progress
from cgjax import storage
from cgjax import workdir as workdir_lib
from cgjax.data import noise as noise_lib
from cgjax.data import pipeline
from cgjax.data import workers as workers_lib


class TrainState(train_state.TrainState):
  """Adds BatchNorm running statistics ({} for models without BN)."""
  batch_stats: Any = None


def make_train_step(model, optim_cfg, mesh, seed: int = 0,
                    bn_group_size: int = 0):
  """(state, batch) -> (state, metrics); mean loss over weight-1 rows.

  BatchNorm normalizes with the statistics of the global batch (the step is
  jitted over the whole mesh), or with those of each group of
  `bn_group_size` consecutive examples (ghost batches: what data-parallel
  trainers without synchronized BatchNorm compute on each device, whatever
  this run's device count); the running averages take the mean of the
  groups' updates. The gradient is combined as `optim_cfg.aggregator` says
  (cgjax/aggregators.py). Dropout and stochastic depth draw from a key of
  (seed, step) (and the group), so a resumed run drops what the
  uninterrupted one did (m3's groups share the step's masks).
  """

  def train_step(state, batch):
    key = jax.random.fold_in(jax.random.key(seed), state.step)

    def forward(params, images, key):
      return model.apply({'params': params, 'batch_stats': state.batch_stats},
                         images, train=True, mutable=['batch_stats'],
                         rngs={'dropout': key})

    def loss_fn(params, batch):
      images = batch['image']
      if bn_group_size and state.batch_stats:
        groups = images.shape[0] // bn_group_size
        grouped = images.reshape((groups, bn_group_size) + images.shape[1:])
        keys = jax.vmap(functools.partial(jax.random.fold_in, key))(
            jnp.arange(groups))
        logits, updates = jax.vmap(forward, in_axes=(None, 0, 0))(
            params, grouped, keys)
        logits = logits.reshape((images.shape[0],) + logits.shape[2:])
        updates = jax.tree.map(lambda x: jnp.mean(x, 0), updates)
      else:
        logits, updates = forward(params, images, key)
      per_example = losses.cross_entropy(logits, batch['label'])
      loss = (jnp.sum(per_example * batch['weight'])
              / jnp.sum(batch['weight']))
      return loss, updates['batch_stats']

    def per_example_loss(params, example):  # models without BatchNorm only
      logits = model.apply({'params': params}, example['image'][None],
                           train=True, rngs={'dropout': key})[0]
      return losses.cross_entropy(logits, example['label'])

    gradient_fn = aggregators.make_gradient_fn(optim_cfg, loss_fn,
                                               per_example_loss, mesh)
    loss, grads, batch_stats = gradient_fn(state.params, batch)
    if batch_stats is None:
      batch_stats = state.batch_stats
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    return state, {'loss': loss}

  return train_step


def validate(config):
  """Cheap checks of names and ranges, before any data is read."""
  noise_lib.check_rate(config.noise.rate, 'noise.rate')
  data_lib.check_name(config.data.name)
  models.check_name(config.model.name)
  optim.make_optimizer(config.optim, config.num_steps)
  aggregators.check(config.optim, config.batch_size)
  check_bn_group(config)
  for name, cfg in config.measurements.items():
    measurements_lib.check(name, cfg, config.num_steps)
  if config.checkpoint_every >= 1 and (config.num_steps // config.checkpoint_every
                                       > measurements_lib.MAX_SCHEDULED_STEPS):
    raise ValueError(f'checkpoint_every={config.checkpoint_every} gives '
                     f'{config.num_steps // config.checkpoint_every:.3g} '
                     f'checkpoints over num_steps={config.num_steps}; at most '
                     f'{measurements_lib.MAX_SCHEDULED_STEPS:,}: raise it')
  models.check_kwargs(config.model.kwargs)
  minimum = {'num_steps': 1, 'batch_size': 1, 'log_every': 1,
             'checkpoint_every': 1, 'keep_checkpoints': 1, 'data.image_size': 1,
             'data.prefetch': 0, 'data.heldout_size': 0,
             'data.train_size': 0, 'seed': 0, 'noise.seed': 0}
  if not config.lock_stale_after > 0:
    raise ValueError('lock_stale_after must be > 0 seconds, got '
                     f'{config.lock_stale_after}')
  workers_lib.resolve(config.data.get('workers', 0),
                      config.data.get('threads', 0))
  if not 0 < config.data.get('crop_fraction', 0.875) <= 1:
    raise ValueError('data.crop_fraction must lie in (0, 1], got '
                     f'{config.data.crop_fraction}')
  for field, low in minimum.items():
    node, *rest = field.split('.')
    value = config[node][rest[0]] if rest else config[node]
    if value < low:
      raise ValueError(f'{field} must be >= {low}, got {value}')


def check_bn_group(config):
  """bn_group_size must divide what one forward pass normalizes: the batch,
  or each of m3's groups."""
  group = config.get('bn_group_size', 0)
  per_pass = config.batch_size // (config.optim.m3_groups
                                   if config.optim.aggregator == 'm3' else 1)
  if group < 0 or (group and per_pass % group):
    raise ValueError(f'bn_group_size={group} must be >= 0 and divide the '
                     f'{per_pass} examples of a forward pass (batch_size='
                     f'{config.batch_size}' + (
                         f' in {config.optim.m3_groups} m3 groups)'
                         if per_pass != config.batch_size else ')'))


def _log(*args):
  if workdir_lib.is_writer():
    print('[cgjax]', *args, flush=True)


def make_context(config, workdir: str = '') -> measurements_lib.Context:
  """Mesh, data (noise applied), loader and model of a run: what the train
  loop and every measurement read (benchmarks build one too)."""
  mesh = parallel.make_mesh()
  parallel.check_divisible('batch_size', config.batch_size, mesh)
  dataset = data_lib.load(config.data, config.noise)
  loader = pipeline.TrainLoader(dataset.train, config.batch_size, config.seed,
                                jax.process_index(), jax.process_count())
  model = models.get_model(config.model.name, dataset.num_classes,
                           **config.model.kwargs)
  param_shapes = jax.eval_shape(
      functools.partial(model.init, train=False), jax.random.key(0),
      dataset.train.images[:1])
  if (aggregators.get(config.optim).per_example
      and param_shapes.get('batch_stats')):
    raise ValueError(f'optim.aggregator={config.optim.aggregator!r} needs '
                     'per-example gradients, which BatchNorm models do not '
                     f'have; use m3 or rm3 with model {config.model.name!r}')
  return measurements_lib.Context(
      config=config, dataset=dataset, model=model, mesh=mesh, loader=loader,
      param_paths=coherence.leaf_paths(param_shapes['params']),
      group_of=models.layer_group_fn(config.model.name), workdir=workdir)


def initial_state(ctx, tx) -> TrainState:
  """The train state at step 0 (params from `config.seed`), replicated."""
  @functools.partial(jax.jit, out_shardings=parallel.replicated(ctx.mesh))
  def init(rng):
    variables = ctx.model.init(rng, ctx.dataset.train.images[:1], train=False)
    return TrainState.create(apply_fn=ctx.model.apply,
                             params=variables['params'],
                             batch_stats=variables.get('batch_stats', {}),
                             tx=tx)
  return init(jax.random.key(ctx.config.seed))


def train_and_evaluate(config, workdir: str, restart: bool = False) -> dict:
  """Runs (or resumes) one training run; returns the last value of each
  metric. `restart`: the workdir's old records are first moved to
  WORKDIR/restart_N/ (never deleted), and the run starts over."""
  validate(config)
  ctx = make_context(config, workdir)
  tx = optim.make_optimizer(config.optim, config.num_steps)
  # Measurements check their fields and choose their samples here, before
  # anything is written.
  measurements = measurements_lib.Measurements(config, ctx)
  lock = workdir_lib.Lock(workdir, config.lock_stale_after).acquire()
  last_step = [-1]  # the last step reached, for the status of a failure

  def peer_lost(process, why):
    # Process 0 writes the status, or the next one where 0 is the lost one.
    if jax.process_index() == (1 if process == 0 else 0):
      workdir_lib.set_status(workdir, 'failed', last_step[0],
                             f'process {process} lost: {why}',
                             any_process=True)
    lock.release()
    return f' at step {last_step[0]}'

  parallel.PEER_LOST_HOOKS.append(peer_lost)
  try:
    if restart:
      moved = workdir_lib.set_aside_records(workdir)
      if moved:
        _log(f'--restart: moved the old records of {workdir} to {moved}')
    for name in workdir_lib.remove_litter(workdir):
      _log(f'removed {name}, left by a write that died midway')
    resuming = workdir_lib.prepare(workdir, config)  # refuses, or writes
    try:
      with _stop_requests(ctx.stop) as stop:
        return _run(config, workdir, ctx, tx, measurements, resuming, stop,
                    last_step)
    except (Diverged, Stopped, workdir_lib.LockLost,
            workdir_lib.RecordsAtRisk):
      raise  # their status is written (or not ours, or left as it was)
    except BaseException as err:
      parallel.check_peers()  # a collective fails at once when a peer died
      try:
        workdir_lib.set_status(workdir, 'failed', last_step[0],
                               f'{type(err).__name__}: {err}')
      except OSError:  # the workdir itself is the problem (full, read-only)
        pass
      raise
  finally:
    parallel.PEER_LOST_HOOKS.remove(peer_lost)
    lock.release()


def evaluate(config, workdir: str, step: int | None = None,
             out_dir: str = '') -> dict:
  """Every measurement of `config` once, on the run's checkpoint at `step`
  (default: the newest), without training and without touching the run's
  own files: scalars go to OUT_DIR/metrics.json (default
  WORKDIR/evaluations/step_STEP/), the measurements' per-example files
  beside it. `config` may differ from the run's in `measurements` only (a
  bigger probe, other sets, a new type), so a new measurement can be
  applied to the checkpoints of finished runs. A run that is training is
  refused: it rotates its checkpoints away under a reader. Returns the
  scalars."""
  validate(config)
  changed = [d for d in workdir_lib.config_changes(workdir, config)
             if not d.startswith('measurements.')]
  if changed:
    raise ValueError(f'evaluating {workdir}: the config differs from the '
                     'run\'s in more than measurements:\n  '
                     + '\n  '.join(changed))
  owner = workdir_lib.owner_of(workdir, config.lock_stale_after)
  if owner is not None:
    raise ValueError(f'{workdir} is training (pid {owner["pid"]} on '
                     f'{owner["host"]}), which deletes older checkpoints '
                     'while they are read: evaluate it when it is done')
  saved = workdir_lib.saved_steps(workdir)  # before orbax creates the dir
  step = saved[-1] if step is None and saved else step
  if step not in saved:
    at = '' if step is None else f' at step {step}'
    raise ValueError(f'{workdir}/checkpoints has no checkpoint{at}; saved '
                     f'steps: {saved or "none"}')
  checkpointer = workdir_lib.Checkpointer(workdir, config.keep_checkpoints)
  out_dir = out_dir or storage.join(workdir, 'evaluations', f'step_{step}')
  ctx = make_context(config, out_dir)
  measurements = measurements_lib.Measurements(config, ctx)
  state = initial_state(ctx, optim.make_optimizer(config.optim,
                                                  config.num_steps))
  state = checkpointer.restore(step, _abstract(state), False)[0]
  checkpointer.close()
  if workdir_lib.is_writer():  # only once there is something to write
    storage.makedirs(out_dir)
  _log(f'evaluating {workdir} at step {step} (checkpoint)')
  for line in measurements.describe():
    _log(line)
  scalars = measurements.run(state, step, log=_log, every=True)
  measurements.finalize(out_dir)
  workdir_lib.write_json(out_dir, 'metrics.json',
                         {'step': step, 'metrics': scalars})
  _log(f'wrote {storage.join(out_dir, "metrics.json")}')
  return scalars


class Diverged(FloatingPointError):
  """The training loss, or an evaluation or probe value, became NaN or inf."""


class Stopped(Exception):
  """SIGTERM (preemption) or SIGINT: the run checkpointed its current step
  and stopped; relaunching resumes it. `exit_code`: 75 (EX_TEMPFAIL) for
  SIGTERM, 130 for SIGINT, as launch.py exits."""

  def __init__(self, state: str, step: int, exit_code: int):
    super().__init__(f'{state} at step {step}: checkpointed; relaunch the '
                     'same command to resume')
    self.state, self.step, self.exit_code = state, step, exit_code


# A progress line at least this often (besides log_every's, which also
# write train/ metrics).
PROGRESS_SECONDS = 30
STOP_SIGNALS = {signal.SIGTERM: ('preempted', 75),
                signal.SIGINT: ('interrupted', 130)}


@contextlib.contextmanager
def _stop_requests(requests: list):
  """A list that SIGTERM / SIGINT append (state, exit code) to; the loop
  stops at the end of the step it is in. Several processes keep JAX's own
  SIGTERM handler instead and agree on the step through its preemption sync
  point (the coordination service): a signal seen by one process alone must
  not make it checkpoint without the others. `requests` is the run
  context's list, which long measurements check between chunks."""
  if (threading.current_thread() is not threading.main_thread()
      or jax.process_count() > 1):
    yield requests  # signals reach the main thread only
    return
  previous = {}

  def handle(signum, frame):
    del frame
    requests.append(STOP_SIGNALS[signum])

  for signum in STOP_SIGNALS:
    previous[signum] = signal.signal(signum, handle)
  try:
    yield requests
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, handler)


def _should_stop(stop, step) -> bool:
  if jax.process_count() > 1:  # every process, at the same step
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return multihost_utils.reached_preemption_sync_point(step)
  return bool(stop)


def _non_finite(scalars: dict) -> list[str]:
  """Evaluation, loss-share and probe values that signal divergence when not
  finite (a probe's m-coherence is 0/0 for all-zero gradients and is not
  one)."""
  return [k for k, v in scalars.items()
          if not np.isfinite(v) and (k.startswith(('eval/', 'shares/'))
                                     or k.endswith(('/mean_loss',
                                                    '/sum_of_sq_norms')))]


@jax.jit
def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x))
                              for x in jax.tree.leaves(tree)]))


def _abstract(state):
  """Shapes, dtypes and shardings of `state`: what a checkpoint restores
  into."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
      state)


def _restore(checkpointer, state, measurements, identity: str):
  """The newest checkpoint of this run that restores, with a warning for
  each that does not or that another run saved (its fingerprint differs:
  e.g. copied in from another seed), each moved aside and kept; None where
  none is left."""
  abstract = _abstract(state)
  for step in checkpointer.steps():
    try:
      restored = (step,) + checkpointer.restore(
          step, abstract, bool(measurements.state_dict()))
      theirs = restored[2].get('fingerprint', identity)  # older: unmarked
      if theirs == identity:
        return restored
      why = (f'belongs to another run (config fingerprint {theirs}, this '
             f'run\'s {identity})')
    except Exception as err:  # pylint: disable=broad-except
      why = f'does not restore ({type(err).__name__}: {str(err)[:200]})'
    where = checkpointer.path(step)
    kept = checkpointer.set_aside(step)
    _log(f'warning: checkpoint {where} {why}; moved to {kept}, trying the '
         'previous one')
  return None


def _describe(ctx, state, measurements, writer):
  """The start of a run's log: resolved config (also to TensorBoard),
  parameters by layer group, devices, data and noise, measurements."""
  config, dataset, mesh = ctx.config, ctx.dataset, ctx.mesh
  flat = coherence.flatten(config.to_dict(), sep='.')
  _log('config (resolved, also in config.json and TensorBoard):\n'
       + '\n'.join(f'    {k} = {v!r}' for k, v in sorted(flat.items())))
  writer.write_config(flat)
  sizes = {}
  for path, leaf in zip(ctx.param_paths, jax.tree.leaves(state.params)):
    group = ctx.group_of(path)
    sizes[group] = sizes.get(group, 0) + leaf.size
  total = sum(sizes.values())
  _log(f'model {config.model.name}: {total:,} parameters\n' + '\n'.join(
      f'    {group:24s} {n:>14,} {100 * n / total:6.1f}%'
      for group, n in sizes.items()))
  device = jax.devices()[0]
  _log(f'{jax.device_count()} {device.platform} device(s) '
       f'({device.device_kind}), {jax.process_count()} process(es); mesh '
       f'{dict(mesh.shape)}')
  noise = dataset.noise
  extra = ''.join(f' (+ {name}: {len(split)})'
                  for name, split in dataset.extra_test.items())
  _log(f'{dataset.name}: {len(dataset.train)} train / {len(dataset.test)} '
       f'test examples{extra}; noise {config.noise.kind} rate '
       f'{config.noise.rate}: {noise.num_selected} selected, '
       f'{noise.num_changed} labels changed')
  for line in measurements.describe():
    _log(line)
  writer.write(0, {'noise/num_selected': noise.num_selected,
                   'noise/num_changed': noise.num_changed,
                   'data/train_examples': len(dataset.train),
                   'data/test_examples': len(dataset.test)})


def _run(config, workdir, ctx, tx, measurements, resuming, stop, last_step):
  mesh, loader, model = ctx.mesh, ctx.loader, ctx.model
  repl = parallel.replicated(mesh)
  state = initial_state(ctx, tx)
  identity = workdir_lib.fingerprint(config)
  if resuming:  # before orbax creates checkpoints/
    workdir_lib.check_records(workdir, config,
                              workdir_lib.saved_steps(workdir))
  checkpointer = workdir_lib.Checkpointer(workdir, config.keep_checkpoints)
  restored = None
  if resuming:
    restored = _restore(checkpointer, state, measurements, identity)
    if restored is None:  # every checkpoint set aside
      workdir_lib.check_records(workdir, config, [])
  start = None
  losses_in_interval = []  # checkpointed: a resumed run logs the same means
  # A stop request interrupted the measurements of the restored step: they
  # run again first (their rows, if a crash left any, are replaced).
  redo = bool(restored and restored[2].get('measure_again'))
  if restored is not None:
    start, state, data_state, measured = restored
    assert data_state['next_step'] == int(state.step) == start, data_state
    measurements.load_state_dict(measured)
    losses_in_interval = [np.float32(x)
                          for x in data_state['interval_losses']]
    _log(f'resuming {workdir} from step {start}')
  writer = workdir_lib.MetricWriter(workdir, -1 if start is None else start,
                                    redo_step=start if redo else None)
  start = start or 0
  last_step[0] = start
  workdir_lib.set_status(workdir, 'running', start)

  train_step = jax.jit(make_train_step(model, config.optim, mesh, config.seed,
                                       config.get('bn_group_size', 0)),
                       donate_argnums=0,
                       in_shardings=(repl, parallel.data_sharded(mesh)),
                       out_shardings=(repl, repl))
  schedule = optim.make_schedule(config.optim, config.num_steps)
  last = {}

  def diverged(step, what):
    checkpointer.close()  # every save finished: each one was finite
    saved = workdir_lib.saved_steps(workdir)
    what += (f'; the last good checkpoint is step {saved[-1]} '
             f'({checkpointer.path(saved[-1])})' if saved else
             '; no checkpoint was saved before')
    workdir_lib.set_status(workdir, 'diverged', step, what)
    writer.close()
    raise Diverged(f'training diverged at step {step}: {what}; lower '
                   f'optim.lr (now {config.optim.lr})')

  every = config.checkpoint_every  # the checkpoint steps, not every step
  checkpoint_steps = set(range((start // every + 1) * every,
                               config.num_steps + 1, every)) | {
                                   config.num_steps}
  tracker = progress.Progress(config.num_steps, start,
                              measurements.schedules(), checkpoint_steps)

  def measure(step, state) -> bool:
    """The step's measurements; True where a stop request interrupted them
    (nothing of them written)."""
    if not measurements.due(step):
      return False
    jax.block_until_ready(state)  # the queued train steps are training time
    try:
      scalars = measurements.run(state, step, log=_log, timed=tracker.timed)
    except measurements_lib.Interrupted:
      _log(f'step {step}: measurements interrupted by a stop request; they '
           'run again after the resume')
      return True
    writer.write(step, scalars)
    last.update(scalars)
    bad = _non_finite(scalars)
    if bad:
      diverged(step, ', '.join(f'{k} {scalars[k]}' for k in bad[:3]))
    return False

  def stopped(step, note='checkpointed; relaunch to resume') -> Stopped:
    how, code = stop[0] if stop else STOP_SIGNALS[signal.SIGTERM]
    checkpointer.close()  # waits until the checkpoint is finalized
    writer.close()
    workdir_lib.set_status(workdir, how, step, note)
    _log(f'{how} at step {step}: {note.split(";")[0]}, exiting ({code})')
    return Stopped(how, step, code)

  def save(step, measure_again=False):
    # Never a non-finite state on disk: the loss between log lines and the
    # params are checked at every step that saves (log_every alone would
    # let a run save NaN params until its next log line).
    losses = jax.device_get(losses_in_interval)
    if losses and not np.isfinite(np.mean(losses)):
      diverged(step, f'loss {np.mean(losses)}')
    if not bool(_all_finite(state.params)):
      diverged(step, 'non-finite parameters')
    with tracker.timed('checkpoint'):
      checkpointer.save(step, state, {
          'next_step': step, 'fingerprint': identity,
          'measure_again': measure_again,
          'interval_losses': [float(x) for x in losses]},
                        measurements.state_dict())
      measurements.finalize(workdir)
      writer.flush()

  if start == 0:
    _describe(ctx, state, measurements, writer)
    if measure(0, state):
      raise stopped(0, 'nothing to checkpoint yet; relaunch to start over')
    measurements.finalize(workdir)
  elif redo:
    if measure(start, state):  # interrupted again: the checkpoint stands
      raise stopped(start)
    measurements.finalize(workdir)

  last_report = time.perf_counter()
  # Update number `step` trains on the loader's batch step - 1.
  batches = pipeline.prefetch(lambda batch: parallel.to_global(batch, mesh),
                              loader.batches(start, config.num_steps),
                              config.data.prefetch)
  with contextlib.closing(batches):  # the decode workers end with the loop
    for step, batch in zip(range(start + 1, config.num_steps + 1), batches):
      state, metrics = train_step(state, batch)
      last_step[0] = step
      losses_in_interval.append(metrics['loss'])
      logged = step % config.log_every == 0 or step == config.num_steps
      # A line right after the first step (its compile booked apart) and at
      # least every PROGRESS_SECONDS, besides the metrics' log_every.
      if (logged or step == start + 1
          or time.perf_counter() - last_report >= PROGRESS_SECONDS):
        loss = float(np.mean(jax.device_get(losses_in_interval)))
        tracker.point(step)
        if logged:
          losses_in_interval = []
          if not np.isfinite(loss):
            diverged(step, f'loss {loss}')
          writer.write(step, {'train/loss': loss,
                              'train/steps_per_sec': tracker.rate() or 0.0,
                              'train/lr': float(schedule(step - 1))})
          workdir_lib.set_status(workdir, 'running', step)
        _log(tracker.line(step, loss))
        last_report = time.perf_counter()
      interrupted = measure(step, state)
      stopping = interrupted or (_should_stop(stop, step)
                                 and step < config.num_steps)
      if (step % config.checkpoint_every == 0 or step == config.num_steps
          or stopping):
        save(step, measure_again=interrupted)
      if stopping:
        raise stopped(step)
  checkpointer.close()
  writer.close()
  workdir_lib.set_status(workdir, 'done', config.num_steps)
  _log(f'done: step {config.num_steps}, elapsed {tracker.elapsed()} | time: '
       f'{tracker.split()}')
  if start == config.num_steps and workdir_lib.is_writer():
    _log(f'{workdir} was already complete')
    return workdir_lib.latest_values(workdir)
  return last
