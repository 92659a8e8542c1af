"""Helpers for tests that run launch.py in fresh processes."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The end-to-end files: launches in fresh processes, multi-process and
# 8-device runs, fake ImageNet / CIFAR-10, GCS, sweeps, docs blocks, the fresh
# venv. Every test in them is `slow`; the fast tier (`-m "not slow"`) keeps
# the unit tests of every module, train_test's in-process loop among them.
SLOW_FILES = ('lifecycle_test.py', 'faults_test.py', 'gcs_test.py',
              'imagenet_test.py', 'imagenet_papers_test.py', 'cifar10_test.py',
              'cluster_test.py', 'sweep_test.py', 'runs_test.py',
              'plugins_test.py', 'm_dependence_test.py', 'init_from_test.py',
              'tracked_weights_test.py', 'trackers_test.py', 'records_test.py',
              'slurm_test.py')


def pytest_collection_modifyitems(items):
  for item in items:
    if os.path.basename(str(item.fspath)) in SLOW_FILES:
      item.add_marker(pytest.mark.slow)


def pytest_configure(config):
  """One XLA compilation cache per session, shared by the xdist workers and the
  launch.py subprocesses: a program one process compiled (a killed run and its
  resume, sweep trials, reference runs) is not compiled again."""
  del config
  if ('PYTEST_XDIST_WORKER' in os.environ
      or 'JAX_COMPILATION_CACHE_DIR' in os.environ):
    return
  cache = tempfile.mkdtemp(prefix='cgjax-test-xla-cache-')
  os.environ['JAX_COMPILATION_CACHE_DIR'] = cache
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '1'
  jax.config.update('jax_compilation_cache_dir', cache)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)


def pytest_unconfigure(config):
  del config
  cache = os.environ.get('JAX_COMPILATION_CACHE_DIR', '')
  if ('PYTEST_XDIST_WORKER' not in os.environ
      and os.path.basename(cache).startswith('cgjax-test-xla-cache-')):
    shutil.rmtree(cache, ignore_errors=True)


def random_variables(model, example_input, seed=0):
  """(params, batch_stats) of `model`'s shapes with random values: He-scaled
  kernels, scales near 1, small biases, running means near 0 and variances
  in [1, 2]. Tests that need variables, not an init, skip the init's compile
  (16 s for a small ResNet-18 on 2 cores)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(model.init, jax.random.key(seed), example_input)

  def value(path, x):
    name = path[-1].key
    if len(x.shape) > 1:
      v = rng.normal(0, np.sqrt(2 / np.prod(x.shape[:-1])), x.shape)
    elif name == 'var':
      v = rng.uniform(1, 2, x.shape)
    else:
      v = rng.uniform(-0.1, 0.1, x.shape) + (name == 'scale')
    return jax.numpy.asarray(v, x.dtype)

  fill = lambda tree: jax.tree_util.tree_map_with_path(value, tree)
  return fill(shapes['params']), fill(shapes.get('batch_stats', {}))


def run_python(args, devices=1, check=True, timeout=300, own_cache=False):
  """Runs `python ARGS` from the repo root with `devices` fake CPU devices;
  launches share the session's XLA cache, unless `own_cache`: then a launch
  keeps its default one beside the workdir."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT,
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  if own_cache:
    env.pop('JAX_COMPILATION_CACHE_DIR', None)
  proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)
  if check and proc.returncode:
    pytest.fail(f'{args} exited {proc.returncode}:\n{proc.stdout}\n'
                f'{proc.stderr[-3000:]}')
  return proc


def printed_commands(spec: str, workdir: str) -> list[list[str]]:
  """The argv (without the interpreter) of each command that `launch.py
  --sweep --print-commands` prints for config `spec`."""
  out = run_python(['launch.py', '--config', spec, '--sweep',
                    '--print-commands', '--workdir', workdir]).stdout
  return [line.split()[1:] for line in out.splitlines()
          if line.startswith(f'{sys.executable} {ROOT}/launch.py')]


def free_port() -> int:
  """A TCP port of 127.0.0.1 that nothing listens on (for a coordinator or
  a test server)."""
  with socket.socket() as sock:
    sock.bind(('127.0.0.1', 0))
    return sock.getsockname()[1]


def run_processes(args, num_processes=2, devices=2, timeout=300):
  """Runs `python ARGS` as a jax.distributed job on a localhost coordinator."""
  port = free_port()
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT,
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  procs = [subprocess.Popen(
      [sys.executable, *args, f'--coordinator_address=localhost:{port}',
       f'--num_processes={num_processes}', f'--process_id={i}'],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True) for i in range(num_processes)]
  outputs = [p.communicate(timeout=timeout)[0] for p in procs]
  for i, (p, out) in enumerate(zip(procs, outputs)):
    if p.returncode:
      pytest.fail(f'process {i} exited {p.returncode}:\n{out[-3000:]}')
  return outputs


def load_params(workdir, step):
  path = os.path.join(os.path.abspath(workdir), 'checkpoints', str(step),
                      'state')
  checkpointer = ocp.StandardCheckpointer()
  meta = checkpointer.metadata(path)
  meta = getattr(meta, 'item_metadata', meta)
  # Restore onto this process's one device, whatever mesh saved it.
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), meta)
  return checkpointer.restore(path, target)['params']


def metric_rows(workdir):
  """metrics.jsonl rows, less the wall-clock ones."""
  from cgjax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  return [r for r in workdir_lib.read_metrics(workdir)
          if r['name'] != 'train/steps_per_sec']


def assert_same_run(workdir, other, step, leaf_rtol=None):
  """Same params (to float tolerance) and final probe/eval values.

  Elementwise by default; with `leaf_rtol`, per leaf ||a - b|| <= leaf_rtol *
  ||a||, for runs where single near-zero weights carry reduction-order noise.
  """
  from cgjax import coherence  # pylint: disable=g-import-not-at-top
  a, b = load_params(workdir, step), load_params(other, step)
  if leaf_rtol is None:
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-4,
                                                         atol=1e-6), a, b)
  else:
    for path, x, y in zip(coherence.leaf_paths(a), jax.tree.leaves(a),
                          jax.tree.leaves(b)):
      x, y = np.asarray(x), np.asarray(y)
      err = np.linalg.norm(x - y) / max(np.linalg.norm(x), 1e-12)
      assert err <= leaf_rtol, f'{path}: relative error {err:.2e}'
  last = lambda w: {r['name']: r['value'] for r in metric_rows(w)
                    if r['step'] == step}
  ra, rb = last(workdir), last(other)
  probes = [k for k in ra if k.startswith('probe/') and k.count('/') == 2
            and k.endswith('/m_coherence')]
  assert probes
  for k in probes:  # as close as the params they are measured at
    np.testing.assert_allclose(ra[k], rb[k], rtol=max(1e-3, leaf_rtol or 0))
  np.testing.assert_allclose(ra['eval/test_acc'], rb['eval/test_acc'],
                             atol=2e-3)


def tensorboard_hparams(run_dir):
  """The hparams and metric columns TensorBoard's HParams tab shows for the
  event files of run_dir, read by TensorBoard's own event reader."""
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  from tensorboard.plugins.hparams import plugin_data_pb2  # pylint: disable=g-import-not-at-top
  events = event_accumulator.EventAccumulator(str(run_dir))
  events.Reload()
  content = events.PluginTagToContent('hparams')
  data = {tag: plugin_data_pb2.HParamsPluginData.FromString(c)
          for tag, c in content.items()}
  start = data['_hparams_/session_start_info'].session_start_info
  experiment = data['_hparams_/experiment'].experiment
  values = {k: v.WhichOneof('kind') and getattr(v, v.WhichOneof('kind'))
            for k, v in start.hparams.items()}
  metrics = [m.name.tag for m in experiment.metric_infos]
  return values, metrics
