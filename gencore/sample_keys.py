"""Per-sample PRNG keys: sample i of a set draws from fold_in(key, i) alone, so it does not
depend on the batch it is drawn in or on how the batch is split over devices and processes."""

import jax


def example_keys(key: jax.Array, indices: jax.Array) -> jax.Array:
    """keys [N] of the samples with global ``indices`` [N]: fold_in(key, i) for each i."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(indices)
