"""Orbax checkpoints: the train state, the data position and the
measurements' own state of a step."""
import time

import jax
import orbax.checkpoint as ocp

from cgjax import storage
from cgjax.workdir.lock import check_owner
from cgjax.workdir.lock import is_writer


def saved_steps(workdir: str) -> list[int]:
  """The steps of the run's finished checkpoints, oldest first, read from
  the directory alone (nothing created, no orbax manager: for readers of a
  run that may still be training)."""
  return sorted(int(d) for d in storage.listdir(storage.join(workdir,
                                                             'checkpoints'))
                if d.isdigit())


class CheckpointFailed(OSError):
  """An asynchronous save failed (e.g. a full disk): reported with the step
  it was saving, whenever the failure shows."""


class Checkpointer:
  """Orbax checkpoints of the train state and the data iterator state.

  Saves are asynchronous: `committed` is the step of the last save known
  finished (the run's commit point), advanced by `poll` and `close`; a save
  that failed raises CheckpointFailed naming its step there.
  """

  def __init__(self, workdir: str, keep: int, committed: int | None = None):
    self._workdir = workdir
    self._dir = storage.join(storage.absolute(workdir), 'checkpoints')
    self._keep = keep
    self.committed = committed
    self._pending = None  # the step of the save in flight
    self._open()

  def _open(self):
    # The caller decides when to save: orbax's own interval policy would also
    # save the very first step it is offered.
    self._manager = ocp.CheckpointManager(
        self._dir, options=ocp.CheckpointManagerOptions(
            max_to_keep=self._keep, create=True))

  def set_aside(self, step: int) -> str:
    """Moves an unrestorable checkpoint out of the way (kept, for a look) to
    WORKDIR/unrestorable_checkpoints/STEP; returns the new path."""
    self._manager.close()
    target = storage.join(storage.dirname(self._dir),
                          'unrestorable_checkpoints', str(step))
    if is_writer():
      storage.makedirs(storage.dirname(target))
      if storage.exists(target):
        target += f'.{int(time.time())}'
      storage.move(self.path(step), target)
    if jax.process_count() > 1:  # every process sees the move before reopening
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices(f'cgjax_set_aside_{step}')
    self._open()
    return target

  def latest_step(self):
    return self._manager.latest_step()

  def path(self, step: int | None = None) -> str:
    return self._dir if step is None else storage.join(self._dir, str(step))

  def steps(self) -> list[int]:
    """The saved steps, newest first."""
    return sorted(self._manager.all_steps(), reverse=True)

  def poll(self) -> bool:
    """Whether the save in flight has finished since the last poll (its step
    is then `committed`); CheckpointFailed where it failed."""
    if self._pending is None or self._manager.is_saving_in_progress():
      return False
    self._finish(self._manager.wait_until_finished)  # raises a failure
    return True

  def _finish(self, wait):
    """Waits for the save in flight; commits its step once it is on disk."""
    step, self._pending = self._pending, None
    try:
      wait()
      if step is not None and step not in self._manager.all_steps():
        raise OSError(f'orbax lists no step {step} after saving it')
    except Exception as err:  # pylint: disable=broad-except
      raise CheckpointFailed(
          f'the checkpoint of step {step} ({self.path(step)}) was not saved: '
          f'{type(err).__name__}: {str(err).splitlines()[0][:300]}') from err
    if step is not None:
      self.committed = step

  def save(self, step: int, state, data_state: dict, measured: dict):
    """`measured`: the measurements' own state, {name: {field: array}}."""
    check_owner(self._workdir)
    if self._pending is not None:  # orbax would wait for it anyway
      self._finish(self._manager.wait_until_finished)
    items = {'state': ocp.args.StandardSave(state),
             'data': ocp.args.JsonSave(data_state)}
    if measured:  # orbax refuses an empty item
      items['measurements'] = ocp.args.StandardSave(measured)
    self._pending = step
    self._manager.save(step, args=ocp.args.Composite(**items), force=True)

  def restore(self, step: int, abstract_state, with_measurements: bool):
    """(state, data state, measurements' state or {})."""
    items = {'state': ocp.args.StandardRestore(abstract_state),
             'data': ocp.args.JsonRestore()}
    if with_measurements:  # host arrays, restored as saved
      items['measurements'] = ocp.args.StandardRestore()
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    return (restored.state, restored.data,
            restored.measurements if with_measurements else {})

  def close(self):
    """Waits for the save in flight (CheckpointFailed where it failed)."""
    try:
      self._finish(self._manager.wait_until_finished)
    finally:
      self._manager.close()
