"""cgjax: per-example gradient alignment (m-coherence) and label-noise studies.

gs:// paths go through fsspec (see cgjax/storage.py), also for orbax and
TFDS, which would otherwise use tf.io.gfile wherever TensorFlow is installed.
"""
import os

os.environ.setdefault('EPATH_USE_TF', 'false')
