"""The pure train step and the training loop.

Loop per update: one jitted `train_step(state, batch) -> (state, metrics)`
over the 'data' mesh, then whatever measurements `config.measurements` has
scheduled for that step (cgjax/measurements: evaluation, m-coherence probes,
learning times, ...), then an orbax checkpoint of the train state, the data
position and the measurements' own state. A relaunch with the same workdir
resumes from the last checkpoint and reproduces the uninterrupted run
(bitwise on CPU).
"""
import functools
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
from cgjax import workdir as workdir_lib
from cgjax.data import noise as noise_lib
from cgjax.data import pipeline


class TrainState(train_state.TrainState):
  """Adds BatchNorm running statistics ({} for models without BN)."""
  batch_stats: Any = None


def make_train_step(model, optim_cfg, mesh, seed: int = 0):
  """(state, batch) -> (state, metrics); mean loss over weight-1 rows.

  BatchNorm normalizes with the statistics of the global batch (the step is
  jitted over the whole mesh) and updates the running averages. The gradient
  is combined as `optim_cfg.aggregator` says (cgjax/aggregators.py). Dropout
  and stochastic depth draw from a key of (seed, step), so a resumed run
  drops what the uninterrupted one did (m3's groups share the step's masks).
  """

  def train_step(state, batch):
    rngs = {'dropout': jax.random.fold_in(jax.random.key(seed), state.step)}

    def loss_fn(params, batch):
      logits, updates = model.apply(
          {'params': params, 'batch_stats': state.batch_stats},
          batch['image'], train=True, mutable=['batch_stats'], rngs=rngs)
      per_example = losses.cross_entropy(logits, batch['label'])
      loss = (jnp.sum(per_example * batch['weight'])
              / jnp.sum(batch['weight']))
      return loss, updates['batch_stats']

    def per_example_loss(params, example):  # models without BatchNorm only
      logits = model.apply({'params': params}, example['image'][None],
                           train=True, rngs=rngs)[0]
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
  for name, cfg in config.measurements.items():
    measurements_lib.check(name, cfg)
  minimum = {'num_steps': 1, 'batch_size': 1, 'log_every': 1,
             'checkpoint_every': 1, 'keep_checkpoints': 1, 'data.image_size': 1,
             'data.prefetch': 0, 'data.heldout_size': 0,
             'data.train_size': 0}
  if not 0 < config.data.get('crop_fraction', 0.875) <= 1:
    raise ValueError('data.crop_fraction must lie in (0, 1], got '
                     f'{config.data.crop_fraction}')
  for field, low in minimum.items():
    node, *rest = field.split('.')
    value = config[node][rest[0]] if rest else config[node]
    if value < low:
      raise ValueError(f'{field} must be >= {low}, got {value}')


def _log(*args):
  if workdir_lib.is_writer():
    print('[cgjax]', *args, flush=True)


def _eta(seconds):
  return time.strftime('%H:%M:%S', time.gmtime(max(seconds, 0)))


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
  if (config.optim.aggregator in aggregators.PER_EXAMPLE
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


def train_and_evaluate(config, workdir: str) -> dict:
  """Runs (or resumes) one training run; returns the last value of each metric."""
  validate(config)
  ctx = make_context(config, workdir)
  tx = optim.make_optimizer(config.optim, config.num_steps)
  # Measurements check their fields and choose their samples here, before
  # anything is written.
  measurements = measurements_lib.Measurements(config, ctx)
  resuming = workdir_lib.prepare(workdir, config)  # nothing written before
  try:
    return _run(config, workdir, ctx, tx, measurements, resuming)
  except Diverged:
    raise
  except BaseException as err:
    workdir_lib.set_status(workdir, 'failed', -1, f'{type(err).__name__}: {err}')
    raise


class Diverged(FloatingPointError):
  """The training loss became NaN or infinite."""


def _run(config, workdir, ctx, tx, measurements, resuming):
  mesh, dataset, loader, model = ctx.mesh, ctx.dataset, ctx.loader, ctx.model
  repl = parallel.replicated(mesh)
  state = initial_state(ctx, tx)
  checkpointer = workdir_lib.Checkpointer(workdir, config.keep_checkpoints)
  start = checkpointer.latest_step() if resuming else None
  losses_in_interval = []  # checkpointed: a resumed run logs the same means
  if start is not None:
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
        state)
    state, data_state, measured = checkpointer.restore(
        start, abstract, bool(measurements.state_dict()))
    assert data_state['next_step'] == int(state.step) == start, data_state
    measurements.load_state_dict(measured)
    losses_in_interval = [np.float32(x)
                          for x in data_state['interval_losses']]
    _log(f'resuming {workdir} from step {start}')
  writer = workdir_lib.MetricWriter(workdir, -1 if start is None else start)
  start = start or 0
  workdir_lib.set_status(workdir, 'running', start)

  train_step = jax.jit(make_train_step(model, config.optim, mesh, config.seed),
                       donate_argnums=0,
                       in_shardings=(repl, parallel.data_sharded(mesh)),
                       out_shardings=(repl, repl))
  schedule = optim.make_schedule(config.optim, config.num_steps)
  last = {}

  def measure(step, state):
    scalars = measurements.run(state, step, log=_log)
    writer.write(step, scalars)
    last.update(scalars)

  if start == 0:
    noise = dataset.noise
    extra = ''.join(f' (+ {name}: {len(split)})'
                    for name, split in dataset.extra_test.items())
    _log(f'{dataset.name}: {len(dataset.train)} train / {len(dataset.test)} '
         f'test examples{extra}; noise {config.noise.kind} rate {config.noise.rate}: '
         f'{noise.num_selected} selected, {noise.num_changed} labels changed; '
         f'{mesh.size} device(s), {jax.process_count()} process(es)')
    for line in measurements.describe():
      _log(line)
    writer.write(0, {'noise/num_selected': noise.num_selected,
                     'noise/num_changed': noise.num_changed,
                     'data/train_examples': len(dataset.train),
                     'data/test_examples': len(dataset.test)})
    measure(0, state)
    measurements.finalize(workdir)

  t0, t0_step = time.perf_counter(), start
  batches = pipeline.prefetch(
      lambda step: parallel.to_global(loader.batch(step - 1), mesh),
      range(start + 1, config.num_steps + 1), config.data.prefetch)
  for step, batch in zip(range(start + 1, config.num_steps + 1), batches):
    state, metrics = train_step(state, batch)
    losses_in_interval.append(metrics['loss'])
    if step % config.log_every == 0 or step == config.num_steps:
      loss = float(np.mean(jax.device_get(losses_in_interval)))
      losses_in_interval = []
      rate = (step - t0_step) / (time.perf_counter() - t0)
      if not np.isfinite(loss):
        workdir_lib.set_status(workdir, 'diverged', step, f'loss {loss}')
        checkpointer.close()
        writer.close()
        raise Diverged(f'training diverged at step {step}: loss {loss}; '
                       f'lower optim.lr (now {config.optim.lr})')
      writer.write(step, {'train/loss': loss, 'train/steps_per_sec': rate,
                          'train/lr': float(schedule(step - 1))})
      _log(f'step {step}/{config.num_steps} ({100 * step // config.num_steps}%)'
           f' | loss {loss:.4f} | {rate:.1f} steps/s | '
           f'ETA {_eta((config.num_steps - step) / rate)}')
      t0, t0_step = time.perf_counter(), step
    measure(step, state)
    if step % config.checkpoint_every == 0 or step == config.num_steps:
      checkpointer.save(step, state, {
          'next_step': step,
          'interval_losses': [float(x)
                              for x in jax.device_get(losses_in_interval)]},
                        measurements.state_dict())
      measurements.finalize(workdir)
  checkpointer.close()
  writer.close()
  workdir_lib.set_status(workdir, 'done', config.num_steps)
  if start == config.num_steps and workdir_lib.is_writer():
    _log(f'{workdir} was already complete')
    return workdir_lib.latest_values(workdir)
  return last
