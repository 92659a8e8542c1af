"""The pure train step and the training loop.

Loop per update: one jitted `train_step(state, batch) -> (state, metrics)`
over the 'data' mesh, then whatever measurements `config.measurements` has
scheduled for that step (cgjax/measurements: evaluation, m-coherence probes,
learning times, ...), then an orbax checkpoint of the train state, the data
position and the measurements' own state. A relaunch with the same workdir
resumes from the last checkpoint and reproduces the uninterrupted run
(bitwise on CPU). The run's lock, records, checkpoints and ending belong to
cgjax.session.RunSession; this module keeps the pure parts (state, step,
validation) and the loop that drives them.
"""
import contextlib
import functools
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
from cgjax import session
from cgjax import storage
from cgjax import trackers as trackers_lib
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
  (seed, step) (and the BN group, and m3's group: each group its own masks),
  so a resumed run drops what the uninterrupted one did.
  """

  def train_step(state, batch):
    key = jax.random.fold_in(jax.random.key(seed), state.step)

    def forward(params, images, key):
      return model.apply({'params': params, 'batch_stats': state.batch_stats},
                         images, train=True, mutable=['batch_stats'],
                         rngs={'dropout': key})

    def loss_fn(params, batch, group=None):
      images = batch['image']
      group_key = key if group is None else jax.random.fold_in(key, group)
      if bn_group_size and state.batch_stats:
        groups = images.shape[0] // bn_group_size
        grouped = images.reshape((groups, bn_group_size) + images.shape[1:])
        keys = jax.vmap(functools.partial(jax.random.fold_in, group_key))(
            jnp.arange(groups))
        logits, updates = jax.vmap(forward, in_axes=(None, 0, 0))(
            params, grouped, keys)
        logits = logits.reshape((images.shape[0],) + logits.shape[2:])
        updates = jax.tree.map(lambda x: jnp.mean(x, 0), updates)
      else:
        logits, updates = forward(params, images, group_key)
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
  measurements_lib.check_names(config.measurements)
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
    if _field(config, field) < low:
      raise ValueError(f'{field} must be >= {low}, got {_field(config, field)}')
  if config.get('init_from'):
    parse_init_from(config.init_from)
  trackers_lib.check_names(config.get('trackers', ()))
  for field in ('seed', 'noise.seed'):  # PRNG keys and numpy seeds take 32 bits
    if _field(config, field) >= 2**32:
      raise ValueError(f'{field} must be < 2**32, got {_field(config, field)}')


def _field(config, dotted: str):
  node, *rest = dotted.split('.')
  return config[node][rest[0]] if rest else config[node]


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
  """The train state at step 0, replicated: params from `config.seed`, or
  from the checkpoint `config.init_from` names."""
  @functools.partial(jax.jit, out_shardings=parallel.replicated(ctx.mesh))
  def init(rng):
    variables = ctx.model.init(rng, ctx.dataset.train.images[:1], train=False)
    return TrainState.create(apply_fn=ctx.model.apply,
                             params=variables['params'],
                             batch_stats=variables.get('batch_stats', {}),
                             tx=tx)
  state = init(jax.random.key(ctx.config.seed))
  if ctx.config.get('init_from'):
    state = _state_from(ctx.config, state)
  return state


def parse_init_from(value: str) -> tuple[str, int]:
  """'WORKDIR@STEP' -> (WORKDIR, STEP); ValueError naming the value."""
  source, at, step = value.rpartition('@')
  if not at or not source or not step.isdigit():
    raise ValueError(f'init_from must be WORKDIR@STEP (a checkpoint step), '
                     f'got {value!r}')
  return source, int(step)


def _state_from(config, state) -> TrainState:
  """`state` with the params and BatchNorm statistics (and, with
  init_optimizer, the optimizer state) of the checkpoint init_from names."""
  source, step = parse_init_from(config.init_from)
  saved = workdir_lib.saved_steps(source)
  if step not in saved:
    raise ValueError(f'init_from={config.init_from!r}: {source}/checkpoints '
                     f'has no checkpoint at step {step}; saved steps: '
                     f'{saved or "none"}')
  checkpointer = workdir_lib.Checkpointer(source, keep=len(saved))
  fit = lambda what, err: ValueError(
      f'init_from={config.init_from!r}: its {what} do not fit model '
      f'{config.model.name!r} with these settings ({err})')
  try:
    if config.init_optimizer:  # restored into this run's own structure
      try:
        return checkpointer.restore(step, session.abstract_state(state),
                                    False)[0].replace(step=state.step)
      except (ValueError, KeyError, TypeError) as err:
        raise fit('train state (optimizer included)',
                  str(err).splitlines()[0][:300]) from None
    # Params only, as saved (host arrays): any optimizer's state may be there.
    saved_state = checkpointer.restore(step, None, False)[0]
  finally:
    checkpointer.close()
  parts = {}
  for name in ('params', 'batch_stats'):
    theirs, ours = saved_state.get(name) or {}, getattr(state, name)
    shapes = lambda tree: {p: tuple(np.shape(x)) for p, x in zip(
        coherence.leaf_paths(tree), jax.tree.leaves(tree))} if jax.tree.leaves(
            tree) else {}
    theirs_shapes, our_shapes = shapes(theirs), shapes(ours)
    if theirs_shapes != our_shapes:
      path = min(p for p in set(theirs_shapes) | set(our_shapes)
                 if theirs_shapes.get(p) != our_shapes.get(p))
      raise fit(name, f'{path}: {theirs_shapes.get(path, "absent")} in the '
                f'checkpoint, {our_shapes.get(path, "absent")} here')
    parts[name] = jax.tree.map(
        lambda x, like: jax.device_put(np.asarray(x, like.dtype),
                                       like.sharding), theirs, ours)
  return state.replace(**parts)


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
  with session.RunSession(config, workdir, ctx, measurements, restart) as run:
    state, start = run.begin(initial_state(ctx, tx))
    repl = parallel.replicated(ctx.mesh)
    train_step = jax.jit(
        make_train_step(ctx.model, config.optim, ctx.mesh, config.seed,
                        config.get('bn_group_size', 0)),
        donate_argnums=0, in_shardings=(repl, parallel.data_sharded(ctx.mesh)),
        out_shardings=(repl, repl))
    schedule = optim.make_schedule(config.optim, config.num_steps)
    # Update number `step` trains on the loader's batch step - 1.
    batches = pipeline.prefetch(
        lambda batch: parallel.to_global(batch, ctx.mesh),
        ctx.loader.batches(start, config.num_steps), config.data.prefetch)
    with contextlib.closing(batches):  # the decode workers end with the loop
      for step, batch in zip(range(start + 1, config.num_steps + 1), batches):
        state, metrics = train_step(state, batch)
        run.record_loss(step, metrics['loss'], schedule)
        interrupted = run.measure(step, state)
        stopping = interrupted or run.stop_requested(step)
        if run.checkpoint_due(step) or stopping:
          run.save(step, state, measure_again=interrupted)
        if stopping:
          raise run.stopped(step)
  return run.final_values()


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
  state = checkpointer.restore(step, session.abstract_state(state), False)[0]
  checkpointer.close()
  if workdir_lib.is_writer():  # only once there is something to write
    storage.makedirs(out_dir)
  session.log(f'evaluating {workdir} at step {step} (checkpoint)')
  for line in measurements.describe():
    session.log(line)
  scalars = measurements.run(state, step, log=session.log, every=True)
  measurements.finalize(out_dir)
  workdir_lib.write_json(out_dir, 'metrics.json',
                         {'step': step, 'metrics': scalars})
  session.log(f'wrote {storage.join(out_dir, "metrics.json")}')
  return scalars
