"""Step time of each aggregator relative to plain SGD ('mean'), in one run.

    python -m benchmarks.aggregator_cost [--steps 20]

For the embedded study's MLP (3 x 256 on 28x28), a small CNN and an MLP of
4 x 512 (balanced layers), batch 100
(m3: 99, three groups of 33), one jitted train step per aggregator: the
median step time over --steps steps, its ratio to 'mean' measured in the same
run, and XLA's compiled temporary memory next to batch x params and batch x
largest parameter leaf (winsorize works leaf by leaf when the former is far
below batch x params).
"""
import argparse
import time

import jax
import numpy as np

from cgjax import models, optim, parallel, train
from configs import common

TRIALS = [('mean', {}), ('winsorize', {'winsorize_c': 1}),
          ('winsorize', {'winsorize_c': 2}), ('winsorize', {'winsorize_c': 4}),
          ('winsorize', {'winsorize_c': 8}), ('m3', {'m3_groups': 3}),
          ('rm3', {}), ('ra3', {})]
MODELS = {'mlp 3x256': ('mlp', {}), 'cnn (32, 64) + 128': ('cnn', {}),
          # Balanced layers: batch x params is 3x batch x largest leaf, so
          # the memory column tells layer-by-layer from all-at-once.
          'mlp 4x512': ('mlp', {'widths': (512,) * 4})}


def time_step(model, cfg, batch_size: int, steps: int):
  """(median seconds per step, compiled temp bytes) of one configuration."""
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
  state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t)
  return float(np.median(times)), temp, params


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--models', nargs='*', default=list(MODELS),
                      help=f'subset of {list(MODELS)}')
  args = parser.parse_args()
  print(f'jax {jax.__version__}, {jax.default_backend()}, '
        f'{jax.device_count()} device(s)')
  for model_name in args.models:
    module, kwargs = MODELS[model_name]
    model = models.get_model(module, 10, **kwargs)
    base = None
    print(f'\n{model_name}, batch 100:')
    print(f'  {"aggregator":16s} {"ms/step":>8s} {"x mean":>7s} '
          f'{"temp MB":>8s}')
    for name, extra in TRIALS:
      cfg = common.base_config().optim
      cfg.update(aggregator=name, **extra)
      batch_size = 99 if name == 'm3' else 100
      seconds, temp, params = time_step(model, cfg, batch_size, args.steps)
      base = base or seconds
      label = name + ''.join(f' {k.split("_")[-1]}={v}' for k, v in extra.items())
      print(f'  {label:16s} {1000 * seconds:8.1f} {seconds / base:7.2f} '
            f'{temp / 2**20:8.1f}', flush=True)
    sizes = [x.size for x in jax.tree.leaves(params)]
    print(f'  (batch x params: {100 * sum(sizes) * 4 / 2**20:.1f} MB; batch x '
          f'largest leaf: {100 * max(sizes) * 4 / 2**20:.1f} MB)')


if __name__ == '__main__':
  main()
