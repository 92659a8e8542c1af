"""Device mesh, shardings and multi-host start-up.

One 1-D mesh with a 'data' axis over every device of every process: params
and optimizer state are replicated, batches are sharded along their leading
axis. The same jitted code runs on 1 CPU, 8 GPUs or a multi-host pod.
"""
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def initialize_distributed(coordinator_address: str = '',
                           num_processes: int = 0, process_id: int = -1):
  """Starts jax.distributed when asked for explicitly or by the cluster.

  With a coordinator address, uses it (localhost runs, plain clusters);
  otherwise initializes when the environment is a known multi-process
  cluster (TPU pod, SLURM), where JAX finds the settings itself.
  """
  if coordinator_address:
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
    return
  import os  # pylint: disable=g-import-not-at-top
  slurm = int(os.environ.get('SLURM_NTASKS', '1')) > 1
  tpu_pod = bool(os.environ.get('TPU_WORKER_HOSTNAMES', '').count(','))
  if slurm or tpu_pod:
    jax.distributed.initialize()


def make_mesh() -> Mesh:
  return Mesh(np.asarray(jax.devices()), ('data',))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P('data'))


def check_divisible(what: str, size: int, mesh: Mesh):
  if size % mesh.size:
    raise ValueError(f'{what}={size} is not divisible by the device count '
                     f'{mesh.size}; use a multiple of {mesh.size}')


def to_global(local_batch: dict, mesh: Mesh) -> dict:
  """Process-local numpy rows -> one global array per field, sharded on 'data'."""
  sharding = data_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v)
          for k, v in local_batch.items()}


def replicate(value, mesh: Mesh) -> jax.Array:
  """A host value, the same on every process, as one replicated array."""
  return jax.make_array_from_process_local_data(replicated(mesh), value)
