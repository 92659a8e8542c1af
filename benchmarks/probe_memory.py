"""Streamed probes: device memory and time against m, in one run.

    python -m benchmarks.probe_memory [--m 1000 8000] [--per_class 2100]
        [--config configs/mcoherence_imagenet.py:runlocal] [--root DIR]

Builds a fake ImageNet (4 classes x --per_class training images, prepared by
the real TFDS builder; reused from --root if there) and, for each m, runs the
config's coherence measurement ('probe', the set 'train') at initialization:

  compiled   XLA's memory analysis of the one compiled chunk pass (arguments,
             outputs, temporaries): the same program for every m
  peak live  the most bytes of live device arrays seen between chunks
             (params, optimizer state, the chunk in flight and the sums)
  time       wall time of the probe, and per example

then the same m examples as one resident pass (`sharded_coherence_stats`,
all images on the device at once) for the values and its live bytes. Last,
the probe's time per example relative to a training step's, and so the
fraction of an ImageNet epoch (1,281,167 examples) one probe set of 40K
costs, by extrapolation.
"""
import argparse
import os
import time

import jax

from cgjax import coherence, losses, optim, parallel, train
from cgjax.data import fake_imagenet
from cgjax.data import pipeline
from cgjax.measurements import coherence as probe_lib
from configs import common

EPOCH = common.IMAGENET_TRAIN_EXAMPLES


def live_bytes() -> int:
  return sum(a.nbytes for a in jax.live_arrays())


def _config(spec, data_dir, m, microbatch):
  import launch  # pylint: disable=g-import-not-at-top
  path, _, arg = spec.partition(':')
  config = launch.config_module(path).get_config(arg or None)
  config.data.data_dir = data_dir
  config.measurements.probe.update(m=m, sets=('train',),
                                   microbatch_size=microbatch)
  return config


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--m', type=int, nargs='+', default=[1000, 8000])
  parser.add_argument('--per_class', type=int, default=2100)
  parser.add_argument('--microbatch', type=int, default=64)
  parser.add_argument('--config',
                      default='configs/mcoherence_imagenet.py:runlocal')
  parser.add_argument('--root', default='/tmp/cgjax_fake_imagenet_big')
  args = parser.parse_args()
  data_dir = os.path.join(args.root, 'data')
  if not os.path.isdir(data_dir):
    print(f'building a fake ImageNet of {4 * args.per_class} training images '
          f'in {args.root} ...', flush=True)
    fake_imagenet.build(args.root, per_class=args.per_class)
  rows = []
  for m in args.m:
    config = _config(args.config, data_dir, m, args.microbatch)
    ctx = train.make_context(config)
    state = train.initial_state(ctx, optim.make_optimizer(config.optim,
                                                          config.num_steps))
    probe = probe_lib.Measurement('probe', config.measurements.probe, ctx)
    split, index = probe.samples['train']
    peak = [live_bytes()]

    def watched(chunks):
      for chunk in chunks:
        peak.append(live_bytes())
        yield chunk

    loss = losses.make_per_example_loss(ctx.model)
    chunks = list(probe.chunks(split, index[:1]))
    compiled = coherence._chunk_pass.lower(
        loss, ctx.mesh, state.params, *chunks[0], (state.batch_stats,), None,
        'norms', True).compile().memory_analysis()
    compiled_bytes = (compiled.argument_size_in_bytes
                      + compiled.output_size_in_bytes
                      + compiled.temp_size_in_bytes)
    probe.run(state, 0)  # warm-up: compiles
    t0 = time.perf_counter()
    stats = coherence.streamed_coherence_stats(
        loss, ctx.mesh, state.params,
        watched(probe.chunks(split, index)),
        (state.batch_stats,), statistics='norms')
    streamed_mc = float(coherence.summarize(stats, ctx.param_paths)[
        'm_coherence'])
    seconds = time.perf_counter() - t0
    del chunks
    # The resident path: every image of the set on the device at once.
    padded = -(-len(index) // args.microbatch) * args.microbatch
    resident = parallel.to_global(pipeline.pad_batch(split, index, padded),
                                  ctx.mesh)
    resident_bytes = live_bytes()
    resident_mc = float(coherence.summarize(coherence.sharded_coherence_stats(
        loss, ctx.mesh, state.params,
        {'image': resident['image'], 'label': resident['label']},
        resident['weight'], resident['label'], (state.batch_stats,),
        microbatch_size=args.microbatch // ctx.mesh.size,
        statistics='norms'), ctx.param_paths)['m_coherence'])
    del resident
    rows.append((m, compiled_bytes, max(peak), resident_bytes, seconds,
                 streamed_mc, resident_mc))
    # Training: seconds per example of one step at the config's batch.
    step = jax.jit(train.make_train_step(ctx.model, config.optim, ctx.mesh))
    batch = parallel.to_global(ctx.loader.batch(0), ctx.mesh)
    jax.block_until_ready(step(state, batch))
    t0 = time.perf_counter()
    for _ in range(5):
      jax.block_until_ready(step(state, batch)[1])
    train_per_example = (time.perf_counter() - t0) / 5 / config.batch_size
  mib = lambda b: f'{b / 2 ** 20:.1f} MiB'
  print(f'\n{jax.devices()[0].platform}, {args.config}, image '
        f'{config.data.image_size} px, microbatch {args.microbatch}')
  print('| m | compiled chunk pass | peak live, streamed | live, resident | '
        'probe time | per example | m-coherence streamed / resident |')
  print('|---|---|---|---|---|---|---|')
  for m, comp, peak, res, sec, smc, rmc in rows:
    print(f'| {m} | {mib(comp)} | {mib(peak)} | {mib(res)} | {sec:.1f} s | '
          f'{1e3 * sec / m:.2f} ms | {smc:.6g} / {rmc:.6g} |')
  first, last = rows[0], rows[-1]
  print(f'\nm {last[0]} / m {first[0]}: compiled {last[1] / first[1]:.3f}, '
        f'peak live streamed {last[2] / first[2]:.3f}, resident '
        f'{last[3] / first[3]:.3f}')
  probe_per_example = last[4] / last[0]
  ratio = probe_per_example / train_per_example
  print(f'probe / training time per example: {ratio:.2f}; one probe set of '
        f'40,000 = {40_000 * ratio / EPOCH:.3f} of an epoch '
        f'({EPOCH:,} examples) by extrapolation; 4 sets = '
        f'{4 * 40_000 * ratio / EPOCH:.3f}')


if __name__ == '__main__':
  main()
