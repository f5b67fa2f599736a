"""Devices and hosts: the `("data",)` mesh, global batches, replication.

Data parallelism on JAX's own runtime. Every array a step reads is a global
`jax.Array` on one mesh over all devices of all processes: batches are
sharded on their leading (example) axis, the state and a phase's terms are
replicated, and `jax.jit` partitions the step (XLA all-reduces the
gradients). Each process contributes its own rows of a global batch
(`jax.make_array_from_process_local_data`), so a host reads only its shard
of the records. Several processes (one per GPU or TPU host) join with
`initialize()` before anything else touches JAX.
"""

import functools
import os

import jax
import numpy as np
from absl import logging
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA = "data"


def initialize() -> None:
  """`jax.distributed.initialize()` when started as several processes.

  Recognised: a Slurm job of several tasks (`launch/slurm.sh`), or
  MCL_DISTRIBUTED=1 on a cluster JAX detects itself (a TPU VM pod slice,
  Open MPI), both through JAX's auto-detection; or the variables
  JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID (any
  launcher; a loopback coordinator in the tests). A single process
  without them does nothing.
  """
  explicit = "JAX_COORDINATOR_ADDRESS" in os.environ
  slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1
  detected = os.environ.get("MCL_DISTRIBUTED") == "1"
  if not (explicit or slurm or detected):
    return
  if explicit:  # CPU processes talk through gloo, JAX's CPU default.
    jax.distributed.initialize(
      coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
      num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
      process_id=int(os.environ["JAX_PROCESS_ID"]),
    )
  else:
    jax.distributed.initialize()
  logging.info(
    "process %d of %d: %d local of %d devices",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )


@functools.cache
def data_mesh() -> Mesh:
  """A one-axis mesh named "data" over every device of every process.

  Built once per process (after `initialize`), so arrays placed on it in
  one call match those of the next.

  Its axis is `Auto`: XLA's partitioner propagates the batch sharding
  through the step (no explicit sharding in the model code).
  """
  return jax.make_mesh(
    (jax.device_count(),), (DATA,), axis_types=(AxisType.Auto,)
  )


def replicate(tree, mesh: Mesh):
  """`tree` replicated on every device of `mesh` (None stays None).

  Every process must pass the same values (parameters built from the same
  seed, terms from the same checkpoints).
  """
  sharding = NamedSharding(mesh, PartitionSpec())
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  return jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
    tree,
  )


def _check_divisible(global_size: int, mesh: Mesh, what: str) -> None:
  if global_size % mesh.size:
    raise ValueError(
      f"a global {what} of {global_size} examples does not divide over "
      f"the {mesh.size} devices of the mesh; choose a multiple of "
      f"{mesh.size}"
    )


def shard_batch(batch, mesh: Mesh):
  """This process's rows of a global batch -> global arrays on `mesh`.

  Args:
    batch: {name: numpy [b, ...]}, the same b for every process; the
      global batch is the processes' rows in process order
      (b * process_count examples).
    mesh: the `("data",)` mesh.

  Returns:
    {name: jax.Array [b * process_count, ...]} sharded on axis 0.

  Raises:
    ValueError: the global batch does not divide over the mesh's devices.
  """
  sharding = NamedSharding(mesh, PartitionSpec(DATA))
  out = {}
  for name, x in batch.items():
    x = np.asarray(x)
    _check_divisible(x.shape[0] * jax.process_count(), mesh, "batch")
    out[name] = jax.make_array_from_process_local_data(sharding, x)
  return out
