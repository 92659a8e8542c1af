"""Model-flops utilization of a compiled step: XLA's flops / time / peak.

Every benchmark that times a compiled function on a GPU prints, next to the
time, `mfu(compiled, seconds, dtype)`: the flops XLA's cost analysis counts
for the compiled program, divided by the measured seconds and by the
device's dense peak for that dtype (below; float32 is the TF32 tensor-core
peak, which XLA uses for float32 dots and convs on these GPUs by default).
On a device not listed (or a CPU) only the achieved TFLOP/s are printed.
"""
import jax

# device_kind substring: (float32 / TF32, bfloat16) dense peak TFLOP/s, from
# the vendors' data sheets (SXM parts).
PEAK_TFLOPS = {
    'H200': (494.7, 989.4),
    'H100': (494.7, 989.4),
    'A100': (156.0, 312.0),
    'L4': (60.0, 121.0),
    'V100': (15.7, 125.0),  # no TF32: float32 is the CUDA-core peak
}


def peak_tflops(dtype: str = 'float32') -> float | None:
  """The first device's dense peak for dtype, or None if not listed."""
  kind = jax.devices()[0].device_kind
  for name, (fp32, bf16) in PEAK_TFLOPS.items():
    if name in kind:
      return bf16 if dtype == 'bfloat16' else fp32
  return None


def flops(compiled) -> float:
  """Flops of one call of a compiled (jax.jit(...).lower(...).compile())."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older jax: one dict per program
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get('flops', float('nan')))


def mfu(compiled, seconds: float, dtype: str = 'float32') -> str:
  """'12.3 TFLOP/s, MFU 2.5% of 494.7 (float32)' for one call in `seconds`."""
  achieved = flops(compiled) / seconds / 1e12
  peak = peak_tflops(dtype)
  if peak is None:
    return f'{achieved:.2f} TFLOP/s (no peak known for this device)'
  return (f'{achieved:.1f} TFLOP/s, MFU {100 * achieved / peak:.1f}% of '
          f'{peak} ({dtype})')
