"""A tiny class-conditional iDDPM end to end: L_hybrid + importance state, guided sampling, NLL."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffusion.guidance import drop_labels, guided_model_fn
from diffusion.likelihood import bits_per_dim
from diffusion.losses import (
    init_loss_history,
    sample_timesteps,
    training_losses,
    update_loss_history,
)
from diffusion.reverse import Parameterization, sample
from diffusion.schedules import get_betas, make_schedule, respace, spaced_timesteps
from diffusion.unet import UNet
from gencore.sample_keys import example_keys

NUM_STEPS, CLASSES = 20, 3


def test_tiny_conditional_model_trains_samples_and_scores() -> None:
    model = UNet(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.1,
                 num_heads=2, learn_sigma=True, num_classes=CLASSES, null_class=True,
                 scale_shift_norm=True)
    s = make_schedule("cosine", NUM_STEPS)
    parameterization = Parameterization("eps", "learned_range")
    x0 = jnp.round(jax.random.uniform(jax.random.key(0), (4, 8, 8, 3)) * 255) / 127.5 - 1
    y = jnp.array([0, 1, 2, 0])
    # The "rbg" generator compiles much faster than threefry for the many parameter inits.
    params = jax.jit(model.init)(jax.random.key(1, impl="rbg"), x0, jnp.zeros((4,)), y)["params"]
    opt = optax.adam(1e-3)

    @jax.jit
    def train_step(params, opt_state, history, key):
        k_t, k_n, k_y, k_d = jax.random.split(key, 4)
        i, weights = sample_timesteps(k_t, history, x0.shape[0])
        noise = jax.random.normal(k_n, x0.shape)
        labels = drop_labels(k_y, y, 0.2, CLASSES)

        def loss_fn(p):
            def fn(x, t):
                return model.apply({"params": p}, x, t, labels, train=True, rngs={"dropout": k_d})

            terms = training_losses(fn, parameterization, s, x0, i, noise, "hybrid")
            return jnp.mean(terms["loss"] * weights), terms

        (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state)
        return (optax.apply_updates(params, updates), opt_state,
                update_loss_history(history, i, terms["vb"]), loss)

    opt_state, history = opt.init(params), init_loss_history(NUM_STEPS)
    losses = []
    for step in range(4):
        params, opt_state, history, loss = train_step(params, opt_state, history,
                                                      jax.random.key(10 + step))
        losses.append(float(loss))
    assert np.all(np.isfinite(losses))
    assert int(history.counts.sum()) == 16

    def apply(p, x, t, labels):
        return model.apply({"params": p}, x, t, labels)

    strided = respace(get_betas("cosine", NUM_STEPS), spaced_timesteps(NUM_STEPS, 5))

    @jax.jit
    def sample_and_score(p, key):
        guided = guided_model_fn(lambda x, t, lab: apply(p, x, t, lab), y, 2.0, CLASSES)
        keys = example_keys(key, jnp.arange(len(x0)))
        ddim = sample(guided, parameterization, strided, keys, x0.shape, method="ddim")
        anc = sample(guided, parameterization, strided, keys, x0.shape)
        bpd = bits_per_dim(lambda x, t: apply(p, x, t, y), parameterization, s, x0, key)
        return ddim, anc, bpd["total"]

    ddim, anc, bpd = sample_and_score(params, jax.random.key(5))
    assert ddim.shape == anc.shape == x0.shape
    assert np.isfinite(np.asarray(anc)).all()
    assert float(jnp.abs(ddim).max()) <= 1.0  # DDIM's last step returns the clipped x0
    assert np.all(np.asarray(bpd) > 0) and np.all(np.isfinite(np.asarray(bpd)))
