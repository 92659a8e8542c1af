"""Per-example squared gradient norms per layer, inside one ordinary backward.

The squared norm of one example's gradient w.r.t. a layer's weights needs only
that example's layer input and output gradient, both present in the batched
backward pass. Each covered linen layer's output goes through an identity
`jax.custom_vjp` "tap" whose backward computes them and returns them as the
cotangent of a zero "probe" input, so `jax.grad` of the summed loss w.r.t.
(params, probes) gives the summed gradient and every example's per-leaf
squared norms together, without materializing per-example gradients.

Covered (exact module types; anything else, a module called more than once,
or an unsupported setting is left to the caller's per-example fallback; a
covered layer's parameters must not also be used outside its __call__, e.g. a
kernel tied to an embedding through `attend`):

  nn.Dense      kernel ||sum_t a_t d_t^T||^2 over the positions t of the
                example (one for an MLP: ||a||^2 ||d||^2), bias ||sum_t d_t||^2
  nn.Conv       the same product over output positions, with a_t the input
                patch of t (shared weights, no input dilation, padding
                'SAME', 'VALID' or explicit); grouped and depthwise convs
                (feature_group_count) per group, in the explicit form
  nn.BatchNorm  with running averages (eval mode, cgjax's per-example
                definition): scale ||sum_t d_t xhat_t||^2, bias ||sum_t d_t||^2

||A^T D||^2 for A [T, K], D [T, O] is taken in the cheaper of two forms:
the Gram form <A A^T, D D^T> (T^2 (K + O) flops: late, low-resolution
layers) or the explicit product (T K O flops: early layers, MLPs). Conv
patches are never built: both forms are summed over the kernel offsets, each a
strided slice of the padded input.
"""
import itertools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

NormsFn = Callable[[Any, jax.Array], jax.Array]  # (residuals, dy) -> [leaves]


def use_gram(positions: int, fan_in: int, fan_out: int) -> bool:
  """Whether the Gram form is cheaper than the explicit product."""
  return positions * (fan_in + fan_out) < fan_in * fan_out


def _sum_sq(x: jax.Array) -> jax.Array:
  return jnp.sum(jnp.square(x))


def _product_sq_norm(slices: list[jax.Array], d: jax.Array) -> jax.Array:
  """||[A_1 .. A_n]^T D||_F^2 for A_j [T, K_j] (one per kernel offset), D [T, O]."""
  t, fan_out = d.shape
  fan_in = sum(a.shape[1] for a in slices)
  if t == 1:  # ||a||^2 ||d||^2, elementwise (an MLP layer)
    return sum(_sum_sq(a) for a in slices) * _sum_sq(d)
  if use_gram(t, fan_in, fan_out):
    gram_a = sum(a @ a.T for a in slices)
    return jnp.sum(gram_a * (d @ d.T))
  return sum(jnp.sum(jnp.square(a.T @ d)) for a in slices)


def _dense(module: nn.Dense, x: jax.Array):
  def norms(x, dy):
    a = x.reshape(-1, x.shape[-1]).astype(jnp.float32)
    d = dy.reshape(-1, dy.shape[-1]).astype(jnp.float32)
    out = [_product_sq_norm([a], d)]
    if module.use_bias:
      out.append(_sum_sq(jnp.sum(d, 0)))
    return jnp.stack(out)
  return norms, x, ('kernel', 'bias') if module.use_bias else ('kernel',)


def _broadcast(value, rank: int) -> tuple[int, ...]:
  value = 1 if value is None else value
  return (value,) * rank if isinstance(value, int) else tuple(value)


def _conv(module: nn.Conv, x: jax.Array):
  kernel_size = _broadcast(module.kernel_size, 1 if isinstance(
      module.kernel_size, int) else len(module.kernel_size))
  rank = len(kernel_size)
  strides = _broadcast(module.strides, rank)
  dilation = _broadcast(module.kernel_dilation, rank)
  padding = nn.linear.canonicalize_padding(module.padding, rank)
  groups = module.feature_group_count
  if (not module.shared_weights or module.mask is not None or _broadcast(module.input_dilation, rank)
      != (1,) * rank or padding in ('CIRCULAR', 'REFLECT', 'CAUSAL')
      or module.conv_general_dilated is not None
      or module.conv_general_dilated_cls is not None):
    return None
  x = x.reshape((-1,) + x.shape[x.ndim - rank - 1:])  # one batch axis
  spatial = x.shape[1:-1]
  dilated = [(k - 1) * r + 1 for k, r in zip(kernel_size, dilation)]
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(spatial, dilated, strides, padding)

  def norms(x, dy):
    x = x.reshape((-1,) + x.shape[x.ndim - rank - 1:]).astype(jnp.float32)
    d = dy.reshape(-1, dy.shape[-1]).astype(jnp.float32)
    out_spatial = dy.shape[dy.ndim - rank - 1:-1]
    padded = jnp.pad(x, [(0, 0)] + list(padding) + [(0, 0)])
    slices = []
    for offset in itertools.product(*(range(k) for k in kernel_size)):
      start = [0] + [o * r for o, r in zip(offset, dilation)] + [0]
      limit = ([x.shape[0]] + [s + (n - 1) * st + 1 for s, n, st in
                               zip(start[1:], out_spatial, strides)]
               + [x.shape[-1]])
      window = jax.lax.slice(padded, start, limit, (1,) + strides + (1,))
      slices.append(window.reshape(-1, x.shape[-1]))
    out = [_product_sq_norm(slices, d) if groups == 1
           else _grouped_sq_norm(slices, d, groups)]
    if module.use_bias:
      out.append(_sum_sq(jnp.sum(d, 0)))
    return jnp.stack(out)
  return norms, x, ('kernel', 'bias') if module.use_bias else ('kernel',)


def _grouped_sq_norm(slices: list[jax.Array], d: jax.Array,
                     groups: int) -> jax.Array:
  """`_product_sq_norm` of a grouped conv: group j's kernel sees input
  channels j*K/g.. and feeds output channels j*O/g.. only (explicit product
  per group: T K O / g flops, e.g. T O for a depthwise conv)."""
  t = d.shape[0]
  d = d.reshape(t, groups, -1)
  return sum(jnp.sum(jnp.square(jnp.einsum(
      'tgi,tgo->gio', a.reshape(t, groups, -1), d))) for a in slices)


def _batch_norm(module: nn.BatchNorm, x: jax.Array, use_running_average):
  if not nn.module.merge_param('use_running_average',
                               module.use_running_average,
                               use_running_average):
    return None  # batch statistics couple the examples
  axes = _broadcast(module.axis, 1)
  features = tuple(a % x.ndim for a in axes)
  reduced = tuple(i for i in range(x.ndim) if i not in features)
  shape = tuple(x.shape[a] for a in features)
  mean = module.get_variable('batch_stats', 'mean').reshape(shape)
  var = module.get_variable('batch_stats', 'var').reshape(shape)
  names = (('scale',) if module.use_scale else ()) + (
      ('bias',) if module.use_bias else ())

  def norms(residuals, dy):
    x, mean, var = residuals
    dy = dy.astype(jnp.float32)
    bcast = lambda v: jnp.expand_dims(v, reduced)
    xhat = (x.astype(jnp.float32) - bcast(mean)) * jax.lax.rsqrt(
        bcast(var) + module.epsilon)
    out = []
    if module.use_scale:
      out.append(_sum_sq(jnp.sum(dy * xhat, reduced)))
    if module.use_bias:
      out.append(_sum_sq(jnp.sum(dy, reduced)))
    return jnp.stack(out)
  return norms, (x, mean, var), names


def _rule(module, args, kwargs):
  """(norms_fn, residuals, leaf names) for a covered call, else None."""
  kind = type(module)
  if not args or kind not in (nn.Dense, nn.Conv, nn.BatchNorm):
    return None
  if kind is nn.Dense:
    custom = module.dot_general is not None or module.dot_general_cls
    return None if kwargs or custom else _dense(module, args[0])
  if kind is nn.Conv:
    return None if kwargs else _conv(module, args[0])
  if set(kwargs) - {'use_running_average'} or len(args) > 2:
    return None  # e.g. a mask
  use_running_average = (args[1] if len(args) > 1 else
                         kwargs.get('use_running_average'))
  return _batch_norm(module, args[0], use_running_average)


def _tap(norms_fn: NormsFn, y, residuals, probe):
  """y, unchanged; the cotangent of `probe` is norms_fn(residuals, dy)."""

  @jax.custom_vjp
  def tap(y, residuals, probe):
    del residuals, probe
    return y

  def fwd(y, residuals, probe):
    del probe
    return y, residuals

  def bwd(residuals, dy):
    return (dy, None,  # no cotangent for the residuals (zero)
            norms_fn(residuals, dy))

  tap.defvjp(fwd, bwd)
  return tap(y, residuals, probe)


def _module_path(module) -> str:
  return '/'.join(module.path)


def find_layers(apply_fn: Callable[[], Any]) -> dict[str, tuple[str, ...]]:
  """{module path: leaf names} of the covered layers `apply_fn` calls once.

  `apply_fn()` runs one example's forward pass (only shapes are evaluated).
  """
  calls, found = {}, {}

  def record(next_fun, args, kwargs, context):
    if context.method_name == '__call__':
      path = _module_path(context.module)
      calls[path] = calls.get(path, 0) + 1
      rule = _rule(context.module, args, kwargs)
      if rule is not None:
        found[path] = rule[2]
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(apply_fn)
  return {p: names for p, names in found.items() if calls[p] == 1}


def tapped(apply_fn: Callable[[], Any], probes: dict[str, jax.Array]):
  """apply_fn() with the layers in `probes` tapped; see the module docstring.

  probes: {module path: zeros [number of leaves]} (from `find_layers`).
  """

  def tap_layer(next_fun, args, kwargs, context):
    y = next_fun(*args, **kwargs)
    path = _module_path(context.module)
    if context.method_name != '__call__' or path not in probes:
      return y
    norms_fn, residuals, _ = _rule(context.module, args, kwargs)
    return _tap(norms_fn, y, residuals, probes[path])

  with nn.intercept_methods(tap_layer):
    return apply_fn()

