"""The one path layer: every file of a run, a sweep or a report goes through it.

A path is a string: a local path, or a URI such as gs://bucket/runs/x. Local
paths behave as plain POSIX files (atomic replace, append); object stores go
through etils.epath over fsspec (gcsfs for gs://; `pip install 'cgjax[gcs]'`),
where an object appears whole when its write ends (so no temp file and no
rename is needed) and nothing can be appended (callers that append, the
metrics and the logs, write whole objects instead).

etils would route gs:// through tf.io.gfile whenever TensorFlow is installed
(the tfds extra); that backend has neither exclusive create nor the storage
emulator, so cgjax asks etils for fsspec (EPATH_USE_TF=false, set when cgjax
is imported: cgjax/__init__.py), as orbax then does too.
"""
import contextlib
import io
import os
import posixpath
import shutil
import threading
import time

from etils import epath


def configure(environ=os.environ):
  """The environment gs:// needs, set before the libraries read it (a value
  the user set wins):

  - EPATH_USE_TF=false: etils would route gs:// through tf.io.gfile
    whenever TensorFlow is installed (no exclusive create, no emulator).
  - GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false: gcsfs 2026.10 looks up each
    bucket's storage layout before every file operation, and does not cache
    a failed lookup (an emulator, or a service account without that
    permission): about 3 s per operation, so the 300-step quick start did
    not finish in 5 minutes. Plain object operations need no layout.
  - With STORAGE_EMULATOR_HOST set (a local GCS server such as
    fake-gcs-server), no credentials for gcsfs (FSSPEC_GCS_TOKEN=anon) nor
    for tensorstore (orbax's arrays), which would ask Google's auth service,
    and HTTP/1.1 to a plain-http TENSORSTORE_GCS_HTTP_URL (emulators speak no
    HTTP/2 without TLS).
  """
  environ.setdefault('EPATH_USE_TF', 'false')
  environ.setdefault('GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT', 'false')
  if environ.get('STORAGE_EMULATOR_HOST'):
    for name in ('FSSPEC_GCS_TOKEN', 'FSSPEC_GS_TOKEN'):
      environ.setdefault(name, 'anon')
    environ.setdefault('GOOGLE_AUTH_TOKEN_FOR_TESTING', 'emulator')
  if environ.get('TENSORSTORE_GCS_HTTP_URL', '').startswith('http://'):
    environ.setdefault('TENSORSTORE_GCS_HTTP_VERSION', '1.1')


def is_local(path: str) -> bool:
  return '://' not in str(path)


def _filesystem(path: str):
  """The fsspec filesystem of a URI: the instance etils uses for it."""
  _remote(path)
  import fsspec  # pylint: disable=g-import-not-at-top
  protocol = str(path).split('://', 1)[0]
  if protocol in ('gs', 'gcs'):
    return fsspec.filesystem('gcs', finalize_on_close=True)
  return fsspec.filesystem(protocol)


def _remote(path: str) -> epath.Path:
  scheme = str(path).split('://', 1)[0]
  if scheme == 'gs':
    try:
      import gcsfs  # pylint: disable=g-import-not-at-top,unused-import
    except ImportError:
      raise ValueError(f'{path}: gs:// paths need gcsfs, which is not '
                       "installed: pip install 'cgjax[gcs]' (in a clone: pip "
                       'install -r requirements-gcs.txt)') from None
  _no_listing_cache()
  return epath.Path(path)


_CONFIGURED = []


def _no_listing_cache():
  """fsspec caches directory listings per process, and then answers 'no
  such file' for an object another process wrote since (a trial's status
  read by the sweep driver, a report by a reader): always ask the store."""
  if not _CONFIGURED:
    import fsspec  # pylint: disable=g-import-not-at-top
    for protocol in ('gs', 'gcs', 's3'):
      fsspec.config.conf.setdefault(protocol, {})['use_listings_cache'] = False
    _CONFIGURED.append(True)


# How long a launch waits for an object store to answer its first request
# (CGJAX_STORAGE_TIMEOUT overrides it): gcsfs alone retried an unreachable
# server for 246 s with 14 tracebacks, and waited forever on one that
# accepts connections but never answers.
STORE_TIMEOUT_SECONDS = float(os.environ.get('CGJAX_STORAGE_TIMEOUT', 60))


def check_reachable(path: str, log=print, timeout: float | None = None):
  """Returns once the store of `path` answers (at once for a local path);
  says so every 10 s (a third of `timeout` if less) while it waits, and
  raises OSError naming `path` after `timeout` seconds without an answer
  (or on its error)."""
  if is_local(path):
    return
  timeout = STORE_TIMEOUT_SECONDS if timeout is None else timeout
  every = min(10.0, timeout / 3)
  result = []

  def ask():
    try:
      result.append(exists(path))
    except Exception as err:  # pylint: disable=broad-except
      result.append(err)

  thread = threading.Thread(target=ask, daemon=True, name='cgjax-store-check')
  start = time.monotonic()
  thread.start()
  while thread.is_alive() and time.monotonic() - start < timeout:
    thread.join(max(0.0, min(every, timeout - (time.monotonic() - start))))
    if thread.is_alive():  # at least one line, however late the wake-up
      log(f'waiting for {path} to answer ({time.monotonic() - start:.0f} s '
          f'of {timeout:g}; CGJAX_STORAGE_TIMEOUT sets the limit)')
  if not result:
    raise OSError(f'{path}: the object store did not answer within '
                  f'{timeout:g} s (CGJAX_STORAGE_TIMEOUT); check its address '
                  '(STORAGE_EMULATOR_HOST for an emulator) and the network')
  if isinstance(result[0], Exception):
    err = result[0]
    raise OSError(f'{path}: the object store refused the first request: '
                  f'{type(err).__name__}: {str(err).splitlines()[0][:200]}')


def join(path: str, *parts: str) -> str:
  if is_local(path):
    return os.path.join(path, *parts)
  return posixpath.join(str(path), *parts)


def dirname(path: str) -> str:
  if is_local(path):
    return os.path.dirname(path)
  scheme, rest = str(path).rstrip('/').split('://', 1)
  return f'{scheme}://{posixpath.dirname(rest)}'


def basename(path: str) -> str:
  return (os.path.basename if is_local(path) else posixpath.basename)(
      str(path).rstrip('/'))


def absolute(path: str) -> str:
  """An absolute local path (orbax needs one); URIs as they are."""
  return os.path.abspath(path) if is_local(path) else str(path)


def exists(path: str) -> bool:
  return os.path.exists(path) if is_local(path) else _remote(path).exists()


def isdir(path: str) -> bool:
  return os.path.isdir(path) if is_local(path) else _remote(path).is_dir()


def listdir(path: str) -> list[str]:
  """Names in a directory (an object prefix); [] where there is none."""
  if is_local(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else []
  remote = _remote(path)
  return sorted(p.name for p in remote.iterdir()) if remote.is_dir() else []


def makedirs(path: str):
  """Local directories; object stores have none to make."""
  if is_local(path):
    os.makedirs(path, exist_ok=True)


def open_file(path: str, mode: str = 'r'):
  """A file object; mode 'a' only for local paths (objects cannot grow)."""
  if is_local(path):
    return open(path, mode)  # pylint: disable=unspecified-encoding
  if 'a' in mode:
    raise ValueError(f'{path}: objects cannot be appended to')
  return _remote(path).open(mode)


def read_text(path: str) -> str:
  with open_file(path) as f:
    return f.read()


def read_bytes(path: str) -> bytes:
  with open_file(path, 'rb') as f:
    return f.read()


def write_atomic(path: str, data: str | bytes):
  """The file whole or not at all: a crash or a full disk mid-write leaves
  the previous version (local: a temp file beside it, then os.replace; an
  object store: the object appears only once its upload has finished)."""
  binary = isinstance(data, bytes)
  if not is_local(path):
    with _remote(path).open('wb' if binary else 'w') as f:
      f.write(data)
    return
  tmp = f'{path}.tmp{os.getpid()}'
  try:
    with open(tmp, 'wb' if binary else 'w') as f:  # pylint: disable=unspecified-encoding
      f.write(data)
    os.replace(tmp, path)
  except BaseException as err:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    if isinstance(err, OSError) and err.errno:  # named: the file, not tmp
      raise OSError(err.errno, err.strerror, path) from None
    raise


def create_exclusive(path: str, data: str) -> bool:
  """Writes `path` only if nothing is there yet (O_EXCL locally; on GCS a
  generation-0 precondition); False if something was."""
  try:
    if is_local(path):
      with open(path, 'x') as f:  # pylint: disable=unspecified-encoding
        f.write(data)
    else:  # gcsfs sends ifGenerationMatch=0 for mode 'create'
      _filesystem(path).pipe_file(path, data.encode(), mode='create')
  except FileExistsError:
    return False
  return True


def remove(path: str):
  """Deletes a file; nothing if it is not there."""
  with contextlib.suppress(FileNotFoundError):
    if is_local(path):
      os.remove(path)
    else:
      _remote(path).unlink()


def rmtree(path: str):
  """Deletes a directory and everything in it; nothing if it is not there."""
  if is_local(path):
    shutil.rmtree(path, ignore_errors=True)
  elif _remote(path).exists():
    _remote(path).rmtree()


def move(src: str, dst: str):
  """Renames a file or directory (object stores: copy, then delete)."""
  if is_local(src):
    os.replace(src, dst)
  else:
    _filesystem(src).mv(src, dst, recursive=True)


def upload(local: str, path: str):
  """Copies a local file to `path` whole (local paths: atomically)."""
  with open(local, 'rb') as f:
    write_atomic(path, f.read())


def save_figure(fig, path: str, **kwargs):
  """matplotlib's savefig to any path (it writes local files only)."""
  if is_local(path):
    fig.savefig(path, **kwargs)
    return
  buffer = io.BytesIO()
  fig.savefig(buffer, format=path.rsplit('.', 1)[-1], **kwargs)
  write_atomic(path, buffer.getvalue())
