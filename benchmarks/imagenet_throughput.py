"""ImageNet throughput: the input pipeline here, ResNet-50 train steps on a GPU.

    python -m benchmarks.imagenet_throughput                  # fake set, temp dir
    python -m benchmarks.imagenet_throughput --data_dir=/data/tfds   # real one

Part 1 (always): images/s (and per core) of cgjax's ImageNet reader, with
eval preprocessing and with Inception training crops, in one run: the
decode in one process (today's 16 threads, and 1 and `cores` threads, whose
speed-up gives the fraction of an image's time that holds the GIL by
Amdahl's law), the Grain worker processes at 1 and `cores` workers (steady
rate, after each worker's first batch; and the main process's CPU time per
image), through `pipeline.prefetch` onto the devices as the training loop
reads it, and the estimate for a `--target_cores` host. Without --data_dir a
fake ImageNet with photo-sized JPEGs (300-500 px a side) is prepared by the
real TFDS builder in a temp dir first.

Part 2 (on a GPU, or on CPU with --model_on_cpu at a small size): images/s of
one ResNet-50 training step (SGD momentum, BatchNorm, uint8 batch already on
device) in cgjax at float32 and bfloat16 compute, next to the same model's
training step in PyTorch (torchvision.models.resnet50 when installed, else
benchmarks/torch_models.py's definition with the identical 25,557,032 params), in
the same run; ratio = cgjax / PyTorch.
"""
import argparse
import tempfile
import time

import jax
import numpy as np

from benchmarks import device
from cgjax.data import workers as workers_lib


def _rate(fn, n_items: int, repeats: int) -> float:
  """Items per second of fn() (already warm), best of `repeats`."""
  best = float('inf')
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t)
  return n_items / best


def _streamed_rate(batches, workers: int) -> tuple[float, float, float]:
  """(images/s, main-process CPU seconds per image, seconds to the first
  batch) of an iterator of batches, timed from when every worker has
  delivered its first batch to the last one: the ~2 s it takes to spawn them
  is paid once per run (and per evaluation or probe pass)."""
  start = time.perf_counter()
  for _ in range(workers):
    jax.block_until_ready(next(batches))
  first = time.perf_counter() - start
  wall, cpu, images = time.perf_counter(), time.process_time(), 0
  for batch in batches:
    images += len(jax.block_until_ready(batch)['label'])
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  return images / wall, cpu / images, first


def _loader(data_dir, batch, image_size, augment, workers, threads):
  from configs import common  # pylint: disable=g-import-not-at-top
  from cgjax import data as data_lib  # pylint: disable=g-import-not-at-top
  from cgjax.data import pipeline  # pylint: disable=g-import-not-at-top
  config = common.base_config()  # the data and noise fields a run has
  config.data.update(name='tfds:imagenet2012', data_dir=data_dir,
                     augment=augment, image_size=image_size, workers=workers,
                     threads=threads)
  config.noise.rate = 0.5
  return pipeline.TrainLoader(data_lib.load(config.data, config.noise).train,
                              batch, seed=0)


def amdahl_serial_fraction(speedup: float, n: int) -> float:
  """f of Amdahl's law S = 1 / (f + (1 - f) / n), from S measured at n."""
  return (n / speedup - 1) / (n - 1)


def input_pipeline(data_dir: str, batch: int, steps: int, image_size: int,
                   repeats: int, cores: int) -> dict:
  """{crop kind: ({reader: images/s}, GIL-held fraction, main-process CPU s
  per image and s to the first batches with `cores` workers)}."""
  from cgjax import parallel  # pylint: disable=g-import-not-at-top
  from cgjax.data import pipeline  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh()
  to_device = lambda b: parallel.to_global(b, mesh)
  results = {}
  for augment in (False, True):
    kind = 'train crops' if augment else 'eval crops'
    inline = {f'threads {threads}': _loader(data_dir, batch, image_size,
                                            augment, 0, threads)
              for threads in (16, 1, cores)}
    for loader in inline.values():
      loader.batch(0)  # warm the thread pool and file handles
    # name: (worker processes, placed on the devices as training does)
    streamed = {'workers 1': (1, False), f'workers {cores}': (cores, False),
                'device': (cores, True)}
    rate, main_cpu, startup = {}, {}, {}
    # Interleaved and repeated, best kept: this VM's cores vary by +-20%
    # from second to second.
    for _ in range(repeats):
      for name, loader in inline.items():
        got = _rate(lambda: [loader.batch(s) for s in range(steps)],
                    batch * steps, 1)
        rate[name] = max(rate.get(name, 0), got)
      for name, (workers, placed) in streamed.items():
        batches = _loader(data_dir, batch, image_size, augment, workers,
                          1).batches(0, steps)
        if placed:
          batches = pipeline.prefetch(to_device, batches, 2)
        got, cpu, first = _streamed_rate(batches, workers)
        if got > rate.get(name, 0):
          rate[name], main_cpu[name], startup[name] = got, cpu, first
    speedup = rate[f'threads {cores}'] / rate['threads 1']
    many = f'workers {cores}'
    results[kind] = (rate, amdahl_serial_fraction(speedup, cores),
                     main_cpu[many], startup[many])
  return results


def report_pipeline(results, cores: int, target_cores: int):
  print(f'  {"reader":44s} {"images/s":>9s} {"per core":>9s}')
  for kind, (rate, gil, main_cpu, startup) in results.items():
    print(f'  {kind}:')
    today = rate['threads 16']
    one, many = rate['workers 1'], rate[f'workers {cores}']
    rows = [('today: 1 process, 16 threads', today, cores),
            ('1 process, 1 thread', rate['threads 1'], 1),
            (f'1 process, {cores} threads', rate[f'threads {cores}'], cores),
            ('Grain, 1 worker', one, 1),
            (f'Grain, {cores} workers', many, cores),
            (f'Grain, {cores} workers + prefetch to device', rate['device'],
             cores)]
    for name, value, used in rows:
      print(f'    {name:42s} {value:9.1f} {value / used:9.1f}')
    print(f'    GIL-held fraction of an image (Amdahl, threads 1 vs {cores}): '
          f'{gil:.2f}; with {cores} workers: main-process CPU '
          f'{main_cpu * 1e3:.2f} ms per image, {startup:.1f} s to the first '
          'batches')
    print(f'    Grain 1 worker / today per core: {one / (today / cores):.2f}; '
          f'{cores} workers / 1 worker: {many / one:.2f}')
    threads_at = rate['threads 1'] / (gil + (1 - gil) / target_cores)
    efficiency = min(1.0, many / (cores * one))  # above 1: noise
    decode_at = target_cores * one * efficiency
    print(f'    at {target_cores} cores (estimate): 1 process with threads '
          f'{threads_at:.0f} images/s (Amdahl; at most '
          f'{rate["threads 1"] / gil:.0f} at any core count); {target_cores} '
          f'workers min({target_cores} x {one:.0f} x {efficiency:.2f} '
          f'efficiency = {decode_at:.0f} decoded, {1 / main_cpu:.0f} received '
          f'by the main process) = {min(decode_at, 1 / main_cpu):.0f} '
          'images/s')


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
  parser.add_argument('--batch', type=int, default=32,
                      help='input-pipeline batch (per host)')
  parser.add_argument('--steps', type=int, default=40,
                      help='input-pipeline batches per measurement')
  parser.add_argument('--repeats', type=int, default=5,
                      help='input-pipeline measurements per reader (best)')
  parser.add_argument('--images', type=int, default=512,
                      help='fake ImageNet training images (read in epochs)')
  parser.add_argument('--target_cores', type=int, default=64,
                      help='host size of the scaling estimate')
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
      per_class = -(-args.images // 8)
      print(f'preparing a fake ImageNet (8 classes x {per_class} JPEGs, '
            '300-500 px) with the TFDS builder ...', flush=True)
      data_dir = fake_imagenet.build(tmp, num_classes=8, per_class=per_class,
                                     num_val=16, sizes=(300, 500))
    cores = workers_lib.host_cores()
    print(f'\nInput pipeline, {args.image_size} px, batch {args.batch}, '
          f'{args.steps} steps, {cores} cores, best of {args.repeats}:')
    report_pipeline(input_pipeline(data_dir, args.batch, args.steps,
                                   args.image_size, args.repeats, cores),
                    cores, args.target_cores)

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
