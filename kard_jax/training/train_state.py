"""The train state and its sharded creation: parameters and optimizer state born on their devices.

`jax.jit(init, out_shardings=...)` materialises every array directly in its shard, so a model larger
than one device's memory can still be initialised.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from kard_jax.training import models as models_lib
from kard_jax.training import partitioning


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs besides the input position: step, params, optimizer state and
  the run's base RNG key (a raw uint32 key; each step folds its number in)."""
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


@dataclasses.dataclass(frozen=True)
class StateSetup:
  """The shapes and shardings of a train state, computed without allocating it."""
  abstract_state: TrainState  # jax.ShapeDtypeStruct leaves
  shardings: TrainState  # NamedSharding leaves
  param_specs: Any  # logical PartitionSpecs of the parameters


def param_shardings(model: models_lib.BaseModel, mesh: Mesh, rules: partitioning.LogicalAxisRules,
                    input_shapes: Mapping[str, tuple] | None = None,
                    input_types: Mapping[str, Any] | None = None) -> tuple[Any, Any, Any]:
  """(abstract params, their NamedShardings, their logical specs), traced without allocating.

  `input_shapes` default to the model's `default_input_shapes()` (parameters do not depend on them).
  """
  if input_shapes is None:
    input_shapes = model.default_input_shapes()
  abstract_vars = jax.eval_shape(
      lambda k: model.get_initial_variables(k, input_shapes, input_types), jax.random.PRNGKey(0))
  specs = models_lib.logical_param_specs(abstract_vars)
  abstract_params = nn.meta.unbox(abstract_vars["params"])
  shardings = nn.logical_to_mesh_sharding(specs, mesh, list(rules))
  return abstract_params, _fill_replicated(abstract_params, shardings, mesh), specs


def setup_state(model: models_lib.BaseModel, tx: optax.GradientTransformation, mesh: Mesh,
                rules: partitioning.LogicalAxisRules, input_shapes: Mapping[str, tuple],
                input_types: Mapping[str, Any] | None = None) -> StateSetup:
  """Traces initialisation abstractly to find every array's shape and sharding."""
  abstract_params, p_shardings, specs = param_shardings(model, mesh, rules, input_shapes,
                                                        input_types)
  abstract_opt = jax.eval_shape(tx.init, abstract_params)
  opt_shardings = partitioning.shardings_like(abstract_opt, abstract_params, p_shardings, mesh)
  rep = partitioning.replicated(mesh)
  abstract_state = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=abstract_params,
                              opt_state=abstract_opt,
                              rng=jax.eval_shape(lambda: jax.random.PRNGKey(0)))
  shardings = TrainState(step=rep, params=p_shardings, opt_state=opt_shardings, rng=rep)
  return StateSetup(abstract_state, shardings, specs)


def _fill_replicated(abstract_params, shardings, mesh):
  """Parameters without logical names (None specs) are replicated."""
  flat_s = jax.tree_util.tree_leaves(shardings, is_leaf=lambda x: x is None or isinstance(
      x, jax.sharding.Sharding))
  flat_p, treedef = jax.tree_util.tree_flatten(abstract_params)
  if len(flat_s) != len(flat_p):
    raise ValueError(f"{len(flat_p)} parameters but {len(flat_s)} partition specs")
  rep = partitioning.replicated(mesh)
  return jax.tree_util.tree_unflatten(treedef, [s if s is not None else rep for s in flat_s])


def make_initializer(model: models_lib.BaseModel, tx: optax.GradientTransformation,
                     setup: StateSetup, input_shapes: Mapping[str, tuple],
                     input_types: Mapping[str, Any] | None = None
                     ) -> Callable[[int, Any | None], TrainState]:
  """`create(seed, params=None)`: a fresh state, sharded, from random parameters (`seed`) or the
  given (pretrained) ones. Compiled once, however many states are made."""

  def init_params(k):
    return nn.meta.unbox(model.get_initial_variables(k, input_shapes, input_types)["params"])

  def init_rest(p, k):
    return TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=tx.init(p), rng=k)

  jit_params = jax.jit(init_params, out_shardings=setup.shardings.params)
  jit_rest = jax.jit(init_rest, out_shardings=setup.shardings, donate_argnums=(0,))

  def create(seed: int, params: Any | None = None) -> TrainState:
    param_key, run_key = jax.random.split(jax.random.PRNGKey(seed))
    if params is None:
      params = jit_params(param_key)
    else:
      params = jax.device_put(params, setup.shardings.params)
    return jit_rest(params, run_key)

  return create


def create_state(model: models_lib.BaseModel, tx: optax.GradientTransformation, setup: StateSetup,
                 seed: int, input_shapes: Mapping[str, tuple],
                 input_types: Mapping[str, Any] | None = None,
                 params: Any | None = None) -> TrainState:
  """One fresh sharded state (see `make_initializer`)."""
  return make_initializer(model, tx, setup, input_shapes, input_types)(seed, params)


def param_count(abstract_params: Any) -> int:
  return sum(int(x.size) for x in jax.tree_util.tree_leaves(abstract_params))
