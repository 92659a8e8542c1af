"""Per-example squared gradient norms per layer, inside one ordinary backward.

The squared norm of one example's gradient w.r.t. a layer's weights needs only
that example's layer input and output gradient, both present in the batched
backward pass. Each covered linen layer's output goes through an identity
`jax.custom_vjp` "tap" whose backward computes them and returns them as the
cotangent of a zero "probe" input, so `jax.grad` of the summed loss w.r.t.
(params, probes) gives the summed gradient and every example's per-leaf
squared norms together, without materializing per-example gradients.

Covered (exact module types, called once in the forward pass itself, with
their parameters read as is and used nowhere else; `find_layers` checks this
on the traced program, and leaves anything else, e.g. nn.vmap, nn.WeightNorm
or a tied kernel, to the caller's per-example fallback):

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
import jax.extend
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
    if d.shape[0] == 1:  # an MLP layer: kernel ||a||^2 ||d||^2, bias ||d||^2
      # (the fewest ops: the MLP's taps cost 1.08-1.13x a plain backward)
      sq_a, sq_d = _sum_sq(a), _sum_sq(d)
      return jnp.stack([sq_a * sq_d, sq_d][:1 + module.use_bias])
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


def _uses(jaxpr, counts: dict) -> None:
  """Adds to counts[var] the equations (inside jit calls too) using var."""
  for eqn in jaxpr.eqns:
    inner = eqn.params.get('jaxpr') if eqn.primitive.name == 'pjit' else None
    for i, v in enumerate(eqn.invars):
      if isinstance(v, jax.extend.core.Var) and v in counts:
        if inner is None:
          counts[v] += 1
        else:  # a jit call: count the uses of its parameter instead
          sub = {inner.jaxpr.invars[i]: 0}
          _uses(inner.jaxpr, sub)
          counts[v] += sum(sub.values())
  for v in jaxpr.outvars:
    if isinstance(v, jax.extend.core.Var) and v in counts:
      counts[v] += 1


def find_layers(fn: Callable[..., Any], params, *args
                ) -> dict[str, tuple[tuple[str, int], ...]]:
  """{module path: ((leaf name, index of the leaf in tree_leaves(params)),
  ...)} of the layers whose norms the taps give exactly.

  `fn(params, *args)` runs one example's forward pass (traced, not run). A
  layer is covered when its rule applies and the taps' assumption holds:
  each of its parameters is a leaf of `params` read as is (not transformed,
  as by nn.WeightNorm, nn.SpectralNorm or nn.map_variables) and used
  nowhere else (not tied, not in a regularization term), and the layer runs
  once, in the forward pass itself rather than inside a lifted transform
  (nn.vmap with shared parameters would sum the members' squared norms
  where the norm of their summed gradient is due; nn.scan, nn.remat). Every
  other leaf is left to the caller's per-example fallback.
  """
  leaves, treedef = jax.tree.flatten(params)
  calls, found = {}, {}
  top = {}

  def record(next_fun, call_args, kwargs, context):
    if context.method_name == '__call__':
      module = context.module
      path = _module_path(module)
      calls[path] = calls.get(path, 0) + 1
      rule = _rule(module, call_args, kwargs)
      x = call_args[0] if call_args else None
      if rule is not None and getattr(x, '_trace', top['trace']) is top[
          'trace'] and module.scope is not None:
        index = [top['leaf'].get(id(module.get_variable('params', n)))
                 for n in rule[2]]
        if None not in index:
          found[path] = tuple(zip(rule[2], index))
    return next_fun(*call_args, **kwargs)

  def traced(leaves, args):
    top['trace'] = getattr(leaves[0], '_trace', None) if leaves else None
    top['leaf'] = {id(v): i for i, v in enumerate(leaves)}
    with nn.intercept_methods(record):
      return fn(jax.tree.unflatten(treedef, leaves), *args)

  jaxpr = jax.make_jaxpr(traced)(leaves, args).jaxpr
  counts = {v: 0 for v in jaxpr.invars[:len(leaves)]}
  _uses(jaxpr, counts)
  uses = list(counts.values())
  return {p: names for p, names in found.items()
          if calls[p] == 1 and all(uses[i] == 1 for _, i in names)}


def tapped(apply_fn: Callable[[], Any], probes: dict[str, jax.Array]):
  """apply_fn() with the layers in `probes` tapped; see the module docstring.

  probes: {module path: zeros [number of leaves]} (paths from `find_layers`).
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

