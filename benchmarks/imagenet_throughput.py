"""ImageNet throughput: the input pipeline here, ResNet-50 train steps on a GPU.

    python -m benchmarks.imagenet_throughput                  # fake set, temp dir
    python -m benchmarks.imagenet_throughput --data_dir=/data/tfds   # real one

Part 1 (always): images/s (and per core) of cgjax's ImageNet reader (JPEG
decode + crop in the PIL thread pool) with eval preprocessing and with
Inception training crops, and through `pipeline.prefetch` onto the devices,
as the training loop reads it. Without --data_dir a fake ImageNet with photo-sized JPEGs (300-500
px a side) is prepared by the real TFDS builder in a temp dir first.

Part 2 (on a GPU, or on CPU with --model_on_cpu at a small size): images/s of
one ResNet-50 training step (SGD momentum, BatchNorm, uint8 batch already on
device) in cgjax at float32 and bfloat16 compute, next to the same model's
training step in PyTorch (torchvision.models.resnet50 when installed, else
benchmarks/torch_models.py's definition with the identical 25,557,032 params), in
the same run; ratio = cgjax / PyTorch.
"""
import argparse
import os
import tempfile
import time

import jax
import numpy as np

from benchmarks import device


def _rate(fn, n_items: int, repeats: int) -> float:
  """Items per second of fn() (already warm), best of `repeats`."""
  best = float('inf')
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t)
  return n_items / best


def input_pipeline(data_dir: str, batch: int, steps: int, image_size: int):
  """(label, images/s)."""
  from configs import common  # pylint: disable=g-import-not-at-top
  from cgjax import data as data_lib, parallel  # pylint: disable=g-import-not-at-top
  from cgjax.data import pipeline  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh()
  rows = []
  for augment in (False, True):
    config = common.base_config()  # the data and noise fields a run has
    config.data.update(name='tfds:imagenet2012', data_dir=data_dir,
                       augment=augment, image_size=image_size)
    config.noise.rate = 0.5
    train = data_lib.load(config.data, config.noise).train
    loader = pipeline.TrainLoader(train, batch, seed=0)
    loader.batch(0)  # warm the thread pool and file handles
    kind = 'train crops' if augment else 'eval crops'
    rows.append((f'read + decode, {kind}', _rate(
        lambda: [loader.batch(s) for s in range(steps)], batch * steps, 3)))
    def to_device():
      for b in pipeline.prefetch(
          lambda s: parallel.to_global(loader.batch(s), mesh), range(steps), 2):
        jax.block_until_ready(b)
    rows.append((f'  + prefetch to device, {kind}',
                 _rate(to_device, batch * steps, 2)))
  return rows


def jax_resnet50_step(batch: int, image_size: int, dtype: str):
  """(a `() -> None` running one cgjax training step, already run once, and
  the compiled step)."""
  from configs import imagenet_resnet50  # pylint: disable=g-import-not-at-top
  from cgjax import models, optim, parallel, train  # pylint: disable=g-import-not-at-top
  config = imagenet_resnet50.get_config()
  model = models.get_model('resnet', 1000, depth=50, dtype=dtype)
  mesh = parallel.make_mesh()
  rng = np.random.default_rng(0)
  data = parallel.to_global({
      'image': rng.integers(0, 256, (batch, image_size, image_size, 3),
                            np.uint8),
      'label': rng.integers(0, 1000, batch).astype(np.int32),
      'weight': np.ones(batch, np.float32)}, mesh)
  variables = jax.jit(model.init, static_argnames='train')(
      jax.random.key(0), data['image'][:1], train=False)
  state = train.TrainState.create(
      apply_fn=model.apply, params=variables['params'],
      batch_stats=variables['batch_stats'],
      tx=optim.make_optimizer(config.optim, config.num_steps))
  state = jax.device_put(state, parallel.replicated(mesh))
  step = jax.jit(train.make_train_step(model, config.optim, mesh),
                 donate_argnums=0)
  compiled = step.lower(state, data).compile()
  box = [state]
  def run():
    box[0], metrics = compiled(box[0], data)
    jax.block_until_ready(metrics)
  run()
  return run, compiled


def torch_resnet50():
  """torchvision's ResNet-50 if installed, else the same network in torch."""
  try:
    import torchvision  # pylint: disable=g-import-not-at-top
    return torchvision.models.resnet50(), 'torchvision.models.resnet50'
  except ImportError:
    from benchmarks import torch_models  # pylint: disable=g-import-not-at-top
    return (torch_models.resnet(50, 1000),
            'plain-torch ResNet-50 (no torchvision)')


def torch_resnet50_step(batch: int, image_size: int, bf16: bool, device: str):
  import torch  # pylint: disable=g-import-not-at-top
  torch.backends.cudnn.benchmark = True
  model, name = torch_resnet50()
  model = model.to(device, memory_format=torch.channels_last).train()
  opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
  images = torch.randint(0, 256, (batch, 3, image_size, image_size),
                         dtype=torch.uint8, device=device)
  labels = torch.randint(0, 1000, (batch,), device=device)
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)

  def run():
    x = (images.float() / 255).contiguous(memory_format=torch.channels_last)
    with torch.autocast(device, torch.bfloat16, enabled=bf16):
      loss = torch.nn.functional.cross_entropy(model(x).float(), labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sync()
  run()
  return run, name, sum(p.numel() for p in model.parameters())


def model_steps(batch: int, image_size: int, steps: int):
  rows = []
  for dtype in ('float32', 'bfloat16'):
    run, compiled = jax_resnet50_step(batch, image_size, dtype)
    ours = _rate(lambda: [run() for _ in range(steps)], batch * steps, 2)
    utilization = device.mfu(compiled, batch / ours, dtype)
    ref = None
    try:
      import torch  # pylint: disable=g-import-not-at-top
      torch_device = 'cuda' if torch.cuda.is_available() else 'cpu'
      trun, name, count = torch_resnet50_step(batch, image_size,
                                              dtype == 'bfloat16', torch_device)
      ref = _rate(lambda: [trun() for _ in range(steps)], batch * steps, 2)
      note = f'{name}, {count:,} params, {torch_device}, eager, channels_last'
    except ImportError:
      note = 'PyTorch not installed: no reference'
    rows.append((dtype, ours, ref, f'{note}; cgjax {utilization}'))
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data_dir', default='',
                      help='prepared TFDS dir with imagenet2012 (ArrayRecord);'
                      ' empty: build a fake set in a temp dir')
  parser.add_argument('--batch', type=int, default=64,
                      help='input-pipeline batch (per host)')
  parser.add_argument('--steps', type=int, default=4)
  parser.add_argument('--image_size', type=int, default=224)
  parser.add_argument('--model_batch', type=int, default=256)
  parser.add_argument('--model_image_size', type=int, default=224)
  parser.add_argument('--model_steps', type=int, default=10)
  parser.add_argument('--model_on_cpu', action='store_true',
                      help='run part 2 without a GPU (use a small '
                      '--model_batch/--model_image_size)')
  args = parser.parse_args()
  print(f'jax {jax.__version__}, backend {jax.default_backend()}, '
        f'{jax.device_count()} device(s): {jax.devices()[0].device_kind}')

  with tempfile.TemporaryDirectory() as tmp:
    data_dir = args.data_dir
    if not data_dir:
      from cgjax.data import fake_imagenet  # pylint: disable=g-import-not-at-top
      per_class = -(-args.batch * args.steps // 8)
      print(f'preparing a fake ImageNet (8 classes x {per_class} JPEGs, '
            '300-500 px) with the TFDS builder ...', flush=True)
      data_dir = fake_imagenet.build(tmp, num_classes=8, per_class=per_class,
                                     num_val=16, sizes=(300, 500))
    cores = os.cpu_count()
    print(f'\nInput pipeline, {args.image_size} px, batch {args.batch}, '
          f'{cores} cores:')
    print(f'  {"":40s} {"images/s":>8s} {"per core":>8s}')
    for name, rate in input_pipeline(data_dir, args.batch, args.steps,
                                     args.image_size):
      print(f'  {name:40s} {rate:8.1f} {rate / cores:8.1f}')

  if jax.default_backend() != 'gpu' and not args.model_on_cpu:
    print('\nResNet-50 train step: skipped (no GPU; --model_on_cpu runs it '
          'here at a small size)')
    return
  print(f'\nResNet-50 train step, {args.model_image_size} px, batch '
        f'{args.model_batch}, {args.model_steps} steps, best of 2 (MFU: '
        'XLA cost-analysis flops / time / device peak, benchmarks/device.py):')
  print(f'  {"compute":9s} {"cgjax img/s":>12s} {"torch img/s":>12s} '
        f'{"ratio":>6s}  reference')
  for dtype, ours, ref, note in model_steps(args.model_batch, args.model_image_size,
                                            args.model_steps):
    ratio = f'{ours / ref:6.2f}' if ref else '     -'
    ref_s = f'{ref:12.1f}' if ref else f'{"-":>12s}'
    print(f'  {dtype:9s} {ours:12.1f} {ref_s} {ratio}  {note}')


if __name__ == '__main__':
  main()
