"""Which accelerator holds which global batch: ahead-of-time compiles, no run.

    python -m benchmarks.scale_plan [--devices 8] [--per_device 8 16]
        [--models resnet18 resnet50 inception_v3 vgg13_bn efficientnet_b0]

For each ImageNet model of the papers' configs (at its image size, 1000
classes, float32), compiles for a 'data' mesh of --devices fake CPU devices
(--xla_force_host_platform_device_count; nothing runs and no data is read):

  train   the jitted train step (SGD with momentum, BatchNorm in train mode)
  probe   one chunk of the streamed m-coherence probe (statistics='norms',
          eval-mode BatchNorm), the same program for any m

and prints, per device, from XLA's memory analysis: parameters (the
replicated params, and optimizer state for train), arguments + outputs,
temporaries (activations and workspace), and the flops of one step from its
cost analysis. Memory is compiled at two per-device batches and taken as
linear in the batch (fixed + per example), which gives the largest
per-device and global batch that fits a 16 GB TPU v3 core, a 32 GB v4 chip
and an 80 GB H100 (with 10% headroom). XLA:CPU's buffer assignment is not the
TPU's or GPU's, so the table is a plan to check on the first real step, not
a guarantee.
"""
import argparse
import os
import sys

ACCELERATORS = {'TPU v3 core (16 GB)': 16e9, 'TPU v4 chip (32 GB)': 32e9,
                'H100 (80 GB)': 80e9}
HEADROOM = 0.9
# model: (config that trains it, its arg)
MODELS = {'resnet18': ('mcoherence_imagenet', 'model=resnet18'),
          'resnet50': ('imagenet_resnet50', ''),
          'inception_v3': ('mcoherence_imagenet', 'model=inception_v3'),
          'vgg13_bn': ('ws_imagenet', 'model=vgg13_bn'),
          'efficientnet_b0': ('mcoherence_imagenet', 'model=efficientnet_b0')}


def _compile(name, per_device, mesh):
  """(train, probe) compiled for `per_device` examples per device."""
  import importlib  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from cgjax import coherence, losses, models, optim, parallel, train  # pylint: disable=g-import-not-at-top
  module, arg = MODELS[name]
  config = importlib.import_module(f'configs.{module}').get_config(arg or None)
  model = models.get_model(config.model.name, 1000, **config.model.kwargs)
  size = config.data.image_size
  tx = optim.make_optimizer(config.optim, config.num_steps)
  image = np.zeros((1, size, size, 3), np.uint8)
  repl, data = parallel.replicated(mesh), parallel.data_sharded(mesh)

  def init():
    variables = model.init(jax.random.key(0), image, train=False)
    return train.TrainState.create(apply_fn=model.apply,
                                   params=variables['params'],
                                   batch_stats=variables['batch_stats'], tx=tx)

  state = jax.eval_shape(init)
  state = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl), state)
  n = per_device * mesh.size
  batch = {'image': jax.ShapeDtypeStruct((n, size, size, 3), np.uint8,
                                         sharding=data),
           'label': jax.ShapeDtypeStruct((n,), np.int32, sharding=data),
           'weight': jax.ShapeDtypeStruct((n,), np.float32, sharding=data)}
  step = jax.jit(train.make_train_step(model, config.optim, mesh),
                 in_shardings=(repl, data), out_shardings=(repl, repl),
                 donate_argnums=0)
  compiled_train = step.lower(state, batch).compile()
  compiled_probe = coherence._chunk_pass.lower(  # pylint: disable=protected-access
      losses.make_per_example_loss(model), mesh, state.params,
      {'image': batch['image'], 'label': batch['label']}, batch['weight'],
      batch['label'], (state.batch_stats,), None, 'norms', True).compile()
  params = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state.params))
  opt = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state.opt_state))
  return {'train': (compiled_train, params + opt),
          'probe': (compiled_probe, params)}


def _memory(compiled):
  m = compiled.memory_analysis()
  return (m.argument_size_in_bytes + m.output_size_in_bytes
          - m.alias_size_in_bytes, m.temp_size_in_bytes)


def _flops(compiled):
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get('flops', float('nan')))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--devices', type=int, default=8)
  parser.add_argument('--per_device', type=int, nargs=2, default=[8, 16])
  parser.add_argument('--models', nargs='+', default=list(MODELS),
                      choices=list(MODELS))
  args = parser.parse_args()
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             f' --xla_force_host_platform_device_count='
                             f'{args.devices}')
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')
  import jax  # pylint: disable=g-import-not-at-top
  from cgjax import parallel  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh()
  small, large = args.per_device
  gb = lambda b: f'{b / 1e9:.2f}'
  print(f'{mesh.size} {jax.devices()[0].platform} devices; per device; '
        f'batch per device {small} and {large}; float32\n')
  header = ('| model | step | params (+opt) GB | args+outputs GB | temp GB '
            f'@{small} | temp GB @{large} | GFLOP/step @{large} | '
            + ' | '.join(f'max batch {a}: per device / global'
                         for a in ACCELERATORS) + ' |')
  print(header)
  print('|' + '---|' * (header.count('|') - 1))
  for name in args.models:
    print(f'compiling {name} ...', file=sys.stderr, flush=True)
    at = {b: _compile(name, b, mesh) for b in (small, large)}
    for kind in ('train', 'probe'):
      (c_small, params), (c_large, _) = at[small][kind], at[large][kind]
      (args_s, temp_s), (args_l, temp_l) = _memory(c_small), _memory(c_large)
      total_s, total_l = args_s + temp_s, args_l + temp_l
      per_example = max((total_l - total_s) / (large - small), 1.0)
      fixed = total_s - per_example * small
      fits = []
      for capacity in ACCELERATORS.values():
        b = int((HEADROOM * capacity - fixed) // per_example)
        fits.append(f'{b} / {b * mesh.size}' if b > 0 else 'none')
      print(f'| {name} | {kind} | {gb(params)} | {gb(args_l)} | '
            f'{gb(temp_s)} | {gb(temp_l)} | {_flops(c_large) / 1e9:.0f} | '
            + ' | '.join(fits) + ' |', flush=True)


if __name__ == '__main__':
  main()
