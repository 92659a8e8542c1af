"""cgjax: per-example gradient alignment (m-coherence) and label-noise studies.

gs:// paths go through fsspec (see cgjax/storage.py), also for orbax and
TFDS, which would otherwise use tf.io.gfile wherever TensorFlow is installed.
The storage settings are set here, before any of them is imported
(`storage.configure`).
"""
from cgjax import storage as _storage

_storage.configure()
