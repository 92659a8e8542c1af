"""Helpers for tests that run launch.py in fresh processes."""
import os
import subprocess
import sys

import jax
import orbax.checkpoint as ocp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(args, devices=1, check=True, timeout=300):
  """Runs `python ARGS` from the repo root with `devices` fake CPU devices."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT,
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)
  if check and proc.returncode:
    pytest.fail(f'{args} exited {proc.returncode}:\n{proc.stdout}\n'
                f'{proc.stderr[-3000:]}')
  return proc


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
