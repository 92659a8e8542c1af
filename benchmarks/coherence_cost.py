"""Cost of layer-wise m-coherence relative to a plain forward+backward, in one run.

    python -m benchmarks.coherence_cost [--models mlp cnn resnet18 resnet50]
        [--m 256 1024] [--per_example_budget_gb 3] [--resnet50_size 64]
        [--no_torch]

For each model and m, the median wall time of:

  plain        one forward+backward of the summed loss over the m examples
  optax        optax.microbatching.micro_grad with per-leaf squared norms as
               per-example metrics (the library's vmap(grad) path)
  cgjax vmap   coherence_stats(statistics='norms', fast=False)
  cgjax fast   coherence_stats(statistics='norms'): per-layer taps
               (cgjax/layer_norms.py) in one ordinary backward
  torch ...    where PyTorch is installed, the same network's per-example
               squared norms via torch.func vmap(grad) and BackPACK's
               BatchL2Grad, with torch's own plain forward+backward

as ratios to the plain pass of the same framework measured in the same run
(timed round robin; cgjax fast: the median of its per-round ratios to plain),
and XLA's compiled temporary memory; on a GPU each row also prints its
TFLOP/s and model-flops utilization (benchmarks/device.py). plain and fast take all m examples at
once; the per-example-gradient paths (optax, cgjax vmap, torch) hold
per-example gradients, so they go in microbatches of the most examples whose
gradients fit --per_example_budget_gb (all m where that fits). On XLA:CPU a
microbatch loop costs extra: convolutions inside a while loop run about 7x
slower than outside (measured on the CNN, jax 0.10), which the vmap rows of
the ResNets then include. BatchNorm is in eval mode everywhere (the
per-example definition, cgjax.losses). Models: the embedded study's MLP 3x256 and
small CNN on 28x28x1, ResNet-18 (small-input stem) on 32x32x3, ResNet-50 at
--resnet50_size px (224 on a GPU).
"""
import argparse
import copy
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import device
from cgjax import coherence, losses, models

MODELS = {  # name: (module, kwargs, image shape)
    'mlp': ('mlp', {}, (28, 28, 1)),
    'cnn': ('cnn', {}, (28, 28, 1)),
    'resnet18': ('resnet', {'depth': 18, 'small_inputs': True}, (32, 32, 3)),
    'resnet50': ('resnet', {'depth': 50}, None),
}
NUM_CLASSES = 10


def _microbatch(name, m, shape, budget_gb) -> int:
  """The largest divisor of m whose per-example gradients fit the budget."""
  module, kwargs, _ = MODELS[name]
  model = models.get_model(module, NUM_CLASSES, **kwargs)
  shapes = jax.eval_shape(model.init, jax.random.key(0),
                          jnp.zeros((1,) + shape, jnp.uint8))['params']
  per_example = 4 * sum(x.size for x in jax.tree.leaves(shapes))
  fit = max(1, int(budget_gb * 2**30 // per_example))
  return max(d for d in range(1, min(m, fit) + 1) if m % d == 0)


def jax_rows(name, m, microbatch, shape, repeats):
  """Timings of the JAX paths; `microbatch` for the per-example paths."""
  microbatch = None if microbatch == m else microbatch  # no loop at all
  module, kwargs, _ = MODELS[name]
  model = models.get_model(module, NUM_CLASSES, **kwargs)
  rng = np.random.default_rng(0)
  examples = {
      'image': jnp.asarray(rng.integers(0, 256, (m,) + shape, np.uint8)),
      'label': jnp.asarray(rng.integers(0, NUM_CLASSES, m).astype(np.int32))}
  variables = model.init(jax.random.key(0), examples['image'][:1])
  params, stats = variables['params'], variables.get('batch_stats', {})
  loss = losses.make_per_example_loss(model)

  def batch_loss(p, batch):
    return jnp.sum(jax.vmap(loss, (None, 0, None))(p, batch, stats))

  plain = jax.jit(jax.grad(batch_loss))

  def sq_norms(g):
    return jnp.stack([jnp.sum(jnp.square(x)) for x in jax.tree.leaves(g)])
  optax_path = jax.jit(optax.microbatching.micro_grad(
      lambda p, ex: loss(p, ex, stats), batch_argnums=1,
      keep_batch_dim=False, microbatch_size=microbatch, metrics_fn=sq_norms))
  fns = {'plain': (plain, (params, examples)),
         'optax': (optax_path, (params, examples))}
  for label, fast in (('cgjax vmap', False), ('cgjax fast', True)):
    fns[label] = (jax.jit(lambda p, ex, fast=fast: coherence.coherence_stats(
        loss, p, ex, extra=(stats,), statistics='norms', fast=fast,
        microbatch_size=None if fast else microbatch)), (params, examples))
  # Round robin: r times each path once, so that a slow spell of the machine
  # hits every path alike, the two one-pass paths (plain, fast) apart from
  # the per-example ones, whose 0.2-0.8 GB of gradients evict the caches
  # (3 consecutive repeats per path, after them, put the MLP's fast path at
  # 1.25-1.46x; interleaved with plain alone, ~1.06x).
  times = {label: [] for label in fns}
  for fn, args in fns.values():
    jax.block_until_ready(fn(*args))  # compile and warm up
  # The one-pass paths take 3x the repeats (they are cheap), and fast's ratio
  # is the median of its ratios to the plain pass of the same round.
  for group, rounds in ((('plain', 'cgjax fast'), 3 * repeats),
                        (('optax', 'cgjax vmap'), repeats)):
    for _ in range(rounds):
      for label in group:
        fn, args = fns[label]
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times[label].append(time.perf_counter() - t)
  rows = {}
  for label, (fn, args) in fns.items():
    seconds = statistics.median(times[label])
    compiled = fn.lower(*args).compile()
    memory = compiled.memory_analysis()
    rows[label] = (seconds, getattr(memory, 'temp_size_in_bytes',
                                    float('nan')) / 2**20)
    utilization = (f', {device.mfu(compiled, seconds)}'
                   if jax.default_backend() == 'gpu' else '')
    print(f'    {label:12s} {1000 * seconds:9.1f} ms, {m / seconds:9.0f} '
          f'examples/s{utilization}', flush=True)
  rows['fast ratio'] = statistics.median(
      f / p for f, p in zip(times['cgjax fast'], times['plain']))
  return rows


def torch_rows(name, m, microbatch, shape, repeats):
  """Plain, torch.func and BackPACK per-example squared norms in PyTorch."""
  import torch  # pylint: disable=g-import-not-at-top
  from benchmarks import torch_models  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  net = {'mlp': lambda: torch_models.mlp(NUM_CLASSES),
         'cnn': lambda: torch_models.cnn(NUM_CLASSES),
         'resnet18': lambda: torch_models.resnet(18, NUM_CLASSES, True),
         'resnet50': lambda: torch_models.resnet(50, NUM_CLASSES)}[name]()
  net = net.eval()  # BatchNorm with running statistics
  x = torch.rand((m, shape[2], shape[0], shape[1]))
  y = torch.randint(0, NUM_CLASSES, (m,))
  chunks = list(zip(x.split(microbatch), y.split(microbatch)))
  ce = torch.nn.functional.cross_entropy

  def plain():
    net.zero_grad()
    ce(net(x), y, reduction='sum').backward()

  params = {k: v.detach() for k, v in net.named_parameters()}
  buffers = {k: v.detach() for k, v in net.named_buffers()}

  def one_loss(p, xi, yi):
    out = torch.func.functional_call(net, (p, buffers), (xi[None],))
    return ce(out, yi[None])

  per_example = torch.func.vmap(torch.func.grad(one_loss), in_dims=(None, 0, 0))

  def func():
    norms = []
    for xb, yb in chunks:
      g = per_example(params, xb, yb)
      norms.append(torch.stack([v.flatten(1).square().sum(1)
                                for v in g.values()], 1))
    return torch.cat(norms)

  fns = {'torch plain': plain, 'torch.func': func}
  try:
    import backpack  # pylint: disable=g-import-not-at-top
    from backpack import extensions  # pylint: disable=g-import-not-at-top
    extended = backpack.extend(copy.deepcopy(net),
                               use_converter=name.startswith('resnet'))
    loss_fn = backpack.extend(torch.nn.CrossEntropyLoss(reduction='sum'))

    def backpack_norms():
      norms = []
      for xb, yb in chunks:
        extended.zero_grad()
        with backpack.backpack(extensions.BatchL2Grad()):
          loss_fn(extended(xb), yb).backward()
        norms.append(torch.stack([p.batch_l2 for p in extended.parameters()],
                                 1))
      return torch.cat(norms)
    fns['BackPACK'] = backpack_norms
  except ImportError:
    print('    BackPACK: not installed (pip install backpack-for-pytorch)')
  except Exception as e:  # pylint: disable=broad-except
    print(f'    BackPACK: cannot extend this network: {type(e).__name__}: '
          f'{str(e)[:200]}')
  rows = {}
  for label, fn in fns.items():
    try:
      fn()
      times = []
      for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
      rows[label] = (statistics.median(times), float('nan'))
      print(f'    {label:12s} {1000 * rows[label][0]:9.1f} ms', flush=True)
    except Exception as e:  # pylint: disable=broad-except
      print(f'    {label}: failed: {type(e).__name__}: {str(e)[:200]}')
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--models', nargs='*', default=list(MODELS),
                      choices=list(MODELS))
  parser.add_argument('--m', nargs='*', type=int, default=[256, 1024])
  parser.add_argument('--per_example_budget_gb', type=float, default=3.0,
                      help='per-example gradients held at once by the '
                      'per-example paths')
  parser.add_argument('--resnet50_size', type=int, default=None,
                      help='ResNet-50 image size (default 224 on a GPU, '
                      'else 64)')
  parser.add_argument('--repeats', type=int, default=10)
  parser.add_argument('--no_torch', action='store_true')
  args = parser.parse_args()
  gpu = jax.default_backend() == 'gpu'
  size = args.resnet50_size or (224 if gpu else 64)
  print(f'jax {jax.__version__}, {jax.default_backend()}: '
        f'{jax.devices()[0].device_kind}; median of {args.repeats}')
  table = []
  for name in args.models:
    shape = MODELS[name][2] or (size, size, 3)
    for m in args.m:
      micro = _microbatch(name, m, shape, args.per_example_budget_gb)
      print(f'\n{name} {shape}, m={m}, per-example paths in microbatches of '
            f'{micro}:', flush=True)
      rows = jax_rows(name, m, micro, shape, args.repeats)
      if not args.no_torch:
        try:
          rows.update(torch_rows(name, m, micro, shape, args.repeats))
        except ImportError:
          print('    PyTorch not installed: no torch rows')
      table.append((name, m, rows))

  print('\nTime / plain forward+backward of the same framework (temp MB):')
  labels = ['optax', 'cgjax vmap', 'cgjax fast', 'torch.func', 'BackPACK']
  print(f'  {"model":9s} {"m":>5s} {"plain ms":>9s} '
        + ' '.join(f'{l:>17s}' for l in labels) + f' {"vmap/fast":>9s}')
  for name, m, rows in table:
    cells = []
    for label in labels:
      base = rows['torch plain' if label in ('torch.func', 'BackPACK')
                  else 'plain'] if label in rows else None
      if label not in rows or base is None:
        cells.append(f'{"-":>17s}')
        continue
      seconds, mb = rows[label]
      mem = f' ({mb:.0f})' if mb == mb else ''
      ratio = (rows['fast ratio'] if label == 'cgjax fast'
               else seconds / base[0])
      cells.append(f'{ratio:9.2f}x{mem:>7s}')
    speedup = rows['cgjax vmap'][0] / rows['cgjax fast'][0]
    print(f'  {name:9s} {m:5d} {1000 * rows["plain"][0]:9.1f} '
          + ' '.join(cells) + f' {speedup:9.2f}')
  print('  (plain temp MB: ' + ', '.join(
      f'{name} m={m}: {rows["plain"][1]:.0f}' for name, m, rows in table)
        + ')')


if __name__ == '__main__':
  main()
