"""Step time of each aggregator relative to plain SGD ('mean'), in one run.

    python -m benchmarks.aggregator_cost [--steps 20] [--models ...]
        [--depths 2 4 8 16]

For the embedded study's MLP (3 x 256 on 28x28), a small CNN and an MLP of
4 x 512 (balanced layers), batch 100 (m3: 99, three groups of 33), one jitted
train step per aggregator: the median step time over --steps steps, its
ratio to 'mean' measured in the same run, and XLA's compiled temporary
memory next to batch x params and batch x largest parameter leaf. For
winsorize also the step with the order statistics from the row scan alone
(`aggregators.TOURNAMENT_MAX_K = 0`, the method before the tournament), timed
in the same run: scan/now is the tournament's speed-up. On a GPU each row
also prints examples/s, TFLOP/s and model-flops utilization
(benchmarks/device.py).

Then the memory scaling of winsorize: MLPs of --depths layers of 512 units,
compiled temporary memory of a winsorize step (c = 1 and 4) as depth grows.
If winsorize held all per-example gradients at once it would grow with
batch x params; working leaf by leaf it grows only with the per-layer
activations and candidate lists (c-dependent, batch-independent per param).
"""
import argparse
import time

import jax
import numpy as np

from benchmarks import device
from cgjax import aggregators, models, optim, parallel, train
from configs import common

TRIALS = [('mean', {}), ('winsorize', {'winsorize_c': 1}),
          ('winsorize', {'winsorize_c': 2}), ('winsorize', {'winsorize_c': 4}),
          ('winsorize', {'winsorize_c': 8}), ('m3', {'m3_groups': 3}),
          ('rm3', {}), ('ra3', {})]
# Chosen by key on the command line (--models mlp cnn); the value's label
# heads the model's table.
MODELS = {'mlp': ('mlp 3x256', 'mlp', {}),
          'cnn': ('cnn (32, 64) + 128', 'cnn', {}),
          # Balanced layers: batch x params is 3x batch x largest leaf, so
          # the memory column tells layer-by-layer from all-at-once.
          'mlp4x512': ('mlp 4x512', 'mlp', {'widths': (512,) * 4})}


def time_step(model, cfg, batch_size: int, steps: int):
  """(median seconds per step, compiled temp bytes, params, compiled);
  steps=0 only compiles."""
  mesh = parallel.make_mesh()
  rng = np.random.default_rng(0)
  batch = parallel.to_global({
      'image': rng.integers(0, 256, (batch_size, 28, 28, 1), np.uint8),
      'label': rng.integers(0, 10, batch_size).astype(np.int32),
      'weight': np.ones(batch_size, np.float32)}, mesh)
  params = model.init(jax.random.key(0), batch['image'][:1])['params']
  tx = optim.make_optimizer(cfg, num_steps=1000)
  state = train.TrainState.create(apply_fn=model.apply, params=params,
                                  batch_stats={}, tx=tx)
  step = jax.jit(train.make_train_step(model, cfg, mesh))
  compiled = step.lower(state, batch).compile()
  memory = compiled.memory_analysis()
  temp = getattr(memory, 'temp_size_in_bytes', float('nan'))
  if not steps:  # memory only
    return float('nan'), temp, params, compiled
  state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t)
  return float(np.median(times)), temp, params, compiled


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--models', nargs='*', default=list(MODELS),
                      choices=list(MODELS), help='which models (default all)')
  parser.add_argument('--depths', nargs='*', type=int, default=[2, 4, 8, 16],
                      help='MLP depths (512 units) for the memory table')
  args = parser.parse_args()
  print(f'jax {jax.__version__}, {jax.default_backend()}, '
        f'{jax.device_count()} device(s)')
  for key in args.models:
    model_name, module, kwargs = MODELS[key]
    model = models.get_model(module, 10, **kwargs)
    base = None
    print(f'\n{model_name}, batch 100:')
    print(f'  {"aggregator":16s} {"ms/step":>8s} {"x mean":>7s} '
          f'{"temp MB":>8s} {"scan ms":>8s} {"scan/now":>8s}')
    for name, extra in TRIALS:
      cfg = common.base_config().optim
      cfg.update(aggregator=name, **extra)
      batch_size = 99 if name == 'm3' else 100
      seconds, temp, params, compiled = time_step(model, cfg, batch_size,
                                                  args.steps)
      base = base or seconds
      label = name + ''.join(f' {k.split("_")[-1]}={v}' for k, v in extra.items())
      scan = ''
      if name == 'winsorize':  # the order statistics by the row scan alone
        limit = aggregators.TOURNAMENT_MAX_K
        aggregators.TOURNAMENT_MAX_K = 0
        before = time_step(model, cfg, batch_size, args.steps)[0]
        aggregators.TOURNAMENT_MAX_K = limit
        scan = f' {1000 * before:8.1f} {before / seconds:8.2f}'
      utilization = (f'  {batch_size / seconds:.0f} examples/s, '
                     f'{device.mfu(compiled, seconds)}'
                     if jax.default_backend() == 'gpu' else '')
      print(f'  {label:16s} {1000 * seconds:8.1f} {seconds / base:7.2f} '
            f'{temp / 2**20:8.1f}{scan}{utilization}', flush=True)
    sizes = [x.size for x in jax.tree.leaves(params)]
    print(f'  (batch x params: {100 * sum(sizes) * 4 / 2**20:.1f} MB; batch x '
          f'largest leaf: {100 * max(sizes) * 4 / 2**20:.1f} MB)')
  if args.depths:
    print('\nwinsorize memory vs depth, MLP of 512-unit layers, batch 100 '
          '(compiled temp MB):')
    print(f'  {"depth":>5s} {"c=1":>7s} {"c=4":>7s} {"batch x params":>15s} '
          f'{"batch x largest leaf":>21s}')
  for depth in args.depths:
    model = models.get_model('mlp', 10, widths=(512,) * depth)
    temps = []
    for c in (1, 4):
      cfg = common.base_config().optim
      cfg.update(aggregator='winsorize', winsorize_c=c)
      _, temp, params, _ = time_step(model, cfg, 100, 0)
      temps.append(temp / 2**20)
    sizes = [x.size for x in jax.tree.leaves(params)]
    print(f'  {depth:5d} {temps[0]:7.0f} {temps[1]:7.0f} '
          f'{100 * sum(sizes) * 4 / 2**20:15.0f} '
          f'{100 * max(sizes) * 4 / 2**20:21.0f}', flush=True)


if __name__ == '__main__':
  main()
