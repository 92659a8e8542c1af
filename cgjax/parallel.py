"""Device mesh, shardings and multi-host start-up.

One 1-D mesh with a 'data' axis over every device of every process: params
and optimizer state are replicated, batches are sharded along their leading
axis. The same jitted code runs on 1 CPU, 8 GPUs or a multi-host pod.
"""
import atexit
import os
import sys
import threading
import time

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
  elif detected_cluster():
    jax.distributed.initialize()
  else:
    return
  stop = watch_peers(_peer_lost)
  # Registered after jax's own shutdown, so it runs first: peers leave the
  # shutdown barrier at different times, which is no loss.
  atexit.register(stop.set)


# Called with (lost process, why) before a process whose peer was lost
# exits; each returns text for the error line (e.g. ' at step 40'). The
# train loop adds one that writes the run's status.
PEER_LOST_HOOKS = []


def check_peers(seconds: float = 3.0):
  """After an error in a multi-process step (a collective whose peer died
  fails at once): whether every other process's heartbeat still moves over
  `seconds`; exits through the lost-peer path if one does not."""
  if jax.process_count() < 2:
    return
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  client = distributed.global_state.client
  try:
    before = dict(client.key_value_dir_get('cgjax/alive/'))
    time.sleep(seconds)
    after = dict(client.key_value_dir_get('cgjax/alive/'))
  except Exception:  # pylint: disable=broad-except
    _peer_lost(0, 'the coordinator stopped answering')
  for p in range(jax.process_count()):
    key = f'cgjax/alive/{p}'
    if p != jax.process_index() and before.get(key) == after.get(key):
      _peer_lost(p, f'no heartbeat for {seconds:.0f} s after a failed step')


def _peer_lost(process: int, why: str):
  extra = ''
  for hook in list(PEER_LOST_HOOKS):
    try:
      extra += hook(process, why) or ''
    except Exception as err:  # pylint: disable=broad-except
      extra += f' (and: {type(err).__name__}: {err})'
  sys.stderr.write(f'error: process {process} of {jax.process_count()} is '
                   f'lost ({why}){extra}; process {jax.process_index()} '
                   'stops. Relaunch every process to resume from the last '
                   'checkpoint\n')
  sys.stderr.flush()
  os._exit(1)  # pylint: disable=protected-access


def detected_cluster(environ=None) -> tuple[int, int] | None:
  """(process id, process count) of a multi-process cluster that JAX finds
  by itself (SLURM with several tasks, a TPU pod), read from the
  environment without starting anything; None elsewhere."""
  environ = os.environ if environ is None else environ
  if int(environ.get('SLURM_NTASKS', '1')) > 1:
    return int(environ.get('SLURM_PROCID', '0')), int(environ['SLURM_NTASKS'])
  hosts = environ.get('TPU_WORKER_HOSTNAMES', '')
  if hosts.count(','):
    return int(environ.get('TPU_WORKER_ID', '0')), hosts.count(',') + 1
  return None


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


# A peer whose heartbeat counter has not moved for this long is lost. JAX's
# own detection takes its heartbeat timeout (100 s by default) and then
# aborts with pages of C++ and Python tracebacks.
PEER_BEAT_SECONDS = 1.0
PEER_LOST_SECONDS = 15.0


def watch_peers(on_lost, beat: float = PEER_BEAT_SECONDS,
                lost_after: float = PEER_LOST_SECONDS) -> threading.Event:
  """Calls `on_lost(process, why)` from a background thread when another
  process of this jax.distributed job dies: its counter in the coordination
  service's key-value store stops moving, or the coordinator (process 0)
  stops answering. Each process increments its own counter every `beat`
  seconds. Returns an Event that stops the watch (set it before a normal
  exit, whose shutdown barrier makes peers leave at different times)."""
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  client = distributed.global_state.client
  me, count = jax.process_index(), jax.process_count()
  stop = threading.Event()

  def watch():
    last = {p: (None, time.monotonic()) for p in range(count) if p != me}
    while not stop.wait(beat):
      try:
        client.key_value_increment(f'cgjax/alive/{me}', 1)
        seen = dict(client.key_value_dir_get('cgjax/alive/'))
      except Exception as err:  # pylint: disable=broad-except
        if not stop.is_set():
          on_lost(0, 'the coordinator stopped answering '
                  f'({str(err).splitlines()[0][:120]})')
        return
      now = time.monotonic()
      for p, (value, since) in last.items():
        current = seen.get(f'cgjax/alive/{p}')
        if current != value:
          last[p] = (current, now)
        elif now - since > lost_after and not stop.is_set():
          on_lost(p, f'no heartbeat for {now - since:.0f} s')
          return

  if count > 1:
    threading.Thread(target=watch, daemon=True,
                     name='cgjax-peer-watch').start()
  return stop
