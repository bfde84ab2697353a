"""`GAN.train_step` once per backend, as Keras documents a custom ``fit``.

TensorFlow: gradient tapes (a nested one for the gradient penalty). PyTorch:
``backward`` and ``torch.autograd.grad``. JAX: a stateless step over the
state lists Keras passes in, with ``stateless_call`` and
``jax.value_and_grad``; `jax_update` takes its noise as an argument, so that
the tests can run it on the noise a TensorFlow step used. Each step updates
the discriminator on real and generated images, then the generator through
the updated discriminator; the losses are `annzoo.layers.gan.losses`'.

The functions take the GAN as ``self``: they are its methods, kept in a file
of their own.
"""

from __future__ import annotations

import keras
from keras import ops

from annzoo.layers.gan import losses

__all__ = ["jax_train_step", "jax_update", "tf_train_step", "torch_train_step"]


def positions(everything, part) -> list[int]:
    """Where each variable of ``part`` sits in ``everything`` (by identity)."""
    index = {id(v): i for i, v in enumerate(everything)}
    return [index[id(v)] for v in part]


def _noise(self, batch_size):
    # As tensors: a step mixing arrays and tensors in one input dict is refused.
    return tuple(ops.convert_to_tensor(n) for n in self.draw_noise(batch_size))


def tf_train_step(self, data):
    import tensorflow as tf  # deferred: only the TensorFlow backend steps here

    images, labels = self.unpack(data)
    z_d, z_g, weights = _noise(self, ops.shape(images)[0])
    d_vars = self.discriminator.trainable_variables
    g_vars = self.generator.trainable_variables
    with tf.GradientTape() as tape:
        fake = self.generator(self.generator_inputs(z_d, labels), training=True)
        real_scores = self.discriminator(
            self.discriminator_inputs(images, labels), training=True
        )
        fake_scores = self.discriminator(
            self.discriminator_inputs(fake, labels), training=True
        )
        penalty = 0.0
        if self.loss_name == "wgan-gp":
            mixed = losses.interpolate(images, fake, weights)
            with tf.GradientTape() as inner:
                inner.watch(mixed)
                scores = self.discriminator(
                    self.discriminator_inputs(mixed, labels), training=True
                )
            penalty = losses.gradient_penalty(inner.gradient(scores, mixed))
        d_loss = self.discriminator_objective(real_scores, fake_scores, penalty)
    self.discriminator_optimizer.apply(tape.gradient(d_loss, d_vars), d_vars)
    with tf.GradientTape() as tape:
        fake = self.generator(self.generator_inputs(z_g, labels), training=True)
        scores = self.discriminator(
            self.discriminator_inputs(fake, labels), training=True
        )
        g_loss = losses.generator_loss(self.loss_name, scores)
    self.generator_optimizer.apply(tape.gradient(g_loss, g_vars), g_vars)
    return self.record(d_loss, g_loss)


def torch_train_step(self, data):
    import torch  # deferred: only the PyTorch backend steps here

    images, labels = self.unpack(data)
    z_d, z_g, weights = _noise(self, ops.shape(images)[0])
    d_vars = self.discriminator.trainable_variables
    g_vars = self.generator.trainable_variables
    self.zero_grad()
    fake = self.generator(self.generator_inputs(z_d, labels), training=True)
    fake = fake.detach()
    real_scores = self.discriminator(
        self.discriminator_inputs(images, labels), training=True
    )
    fake_scores = self.discriminator(
        self.discriminator_inputs(fake, labels), training=True
    )
    penalty = 0.0
    if self.loss_name == "wgan-gp":
        mixed = losses.interpolate(images, fake, weights).detach()
        mixed.requires_grad_(True)
        scores = self.discriminator(
            self.discriminator_inputs(mixed, labels), training=True
        )
        (gradients,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
        penalty = losses.gradient_penalty(gradients)
    d_loss = self.discriminator_objective(real_scores, fake_scores, penalty)
    d_loss.backward()
    with torch.no_grad():
        self.discriminator_optimizer.apply([v.value.grad for v in d_vars], d_vars)
    self.zero_grad()
    fake = self.generator(self.generator_inputs(z_g, labels), training=True)
    scores = self.discriminator(self.discriminator_inputs(fake, labels), training=True)
    g_loss = losses.generator_loss(self.loss_name, scores)
    g_loss.backward()
    with torch.no_grad():
        self.generator_optimizer.apply([v.value.grad for v in g_vars], g_vars)
    self.zero_grad()
    return self.record(d_loss.detach(), g_loss.detach())


def jax_train_step(self, state, data):
    trainable, non_trainable, optimizer_vars, metrics_vars = state
    images, labels = self.unpack(data)
    seed = positions(self.non_trainable_variables, [self.noise_generator.state])
    mapping = [(self.noise_generator.state, non_trainable[seed[0]])]
    with keras.StatelessScope(state_mapping=mapping) as scope:
        noise = _noise(self, ops.shape(images)[0])
    non_trainable = list(non_trainable)
    non_trainable[seed[0]] = scope.get_current_value(self.noise_generator.state)
    d_loss, g_loss, trainable, non_trainable, optimizer_vars = jax_update(
        self, trainable, non_trainable, optimizer_vars, images, labels, noise
    )
    logs, new_metrics = {}, []
    for metric, value in zip(
        self.metrics, (d_loss + g_loss, d_loss, g_loss), strict=True
    ):
        count = len(metric.variables)
        own = metrics_vars[len(new_metrics) : len(new_metrics) + count]
        own = metric.stateless_update_state(own, value)
        logs[metric.name] = metric.stateless_result(own)
        new_metrics += own
    return logs, (trainable, non_trainable, optimizer_vars, new_metrics)


def jax_update(self, trainable, non_trainable, optimizer_vars, images, labels, noise):
    """One discriminator and one generator update on JAX, on explicit state
    (the lists Keras passes to the step) and explicit noise; returns both
    losses and the new state."""
    import jax  # deferred: only the JAX backend steps here

    z_d, z_g, weights = noise
    gen, disc = self.generator, self.discriminator
    g_t = positions(self.trainable_variables, gen.trainable_variables)
    d_t = positions(self.trainable_variables, disc.trainable_variables)
    g_n = positions(self.non_trainable_variables, gen.non_trainable_variables)
    d_n = positions(self.non_trainable_variables, disc.non_trainable_variables)
    g_o = positions(self.optimizer.variables, self.generator_optimizer.variables)
    d_o = positions(self.optimizer.variables, self.discriminator_optimizer.variables)

    def take(values, where):
        return [values[i] for i in where]

    gt, dt = take(trainable, g_t), take(trainable, d_t)
    gn, dn = take(non_trainable, g_n), take(non_trainable, d_n)
    d_inputs = self.discriminator_inputs

    def d_objective(dt, gn, dn):
        fake, gn = gen.stateless_call(
            gt, gn, self.generator_inputs(z_d, labels), training=True
        )
        real_scores, dn = disc.stateless_call(
            dt, dn, d_inputs(images, labels), training=True
        )
        fake_scores, dn = disc.stateless_call(
            dt, dn, d_inputs(fake, labels), training=True
        )
        penalty = 0.0
        if self.loss_name == "wgan-gp":
            mixed = losses.interpolate(images, fake, weights)

            def critic_total(x, dn):
                scores, dn = disc.stateless_call(
                    dt, dn, d_inputs(x, labels), training=True
                )
                return ops.sum(scores), dn

            gradients, dn = jax.grad(critic_total, has_aux=True)(mixed, dn)
            penalty = losses.gradient_penalty(gradients)
        return self.discriminator_objective(real_scores, fake_scores, penalty), (gn, dn)

    (d_loss, (gn, dn)), grads = jax.value_and_grad(d_objective, has_aux=True)(
        dt, gn, dn
    )
    dt, d_opt = self.discriminator_optimizer.stateless_apply(
        take(optimizer_vars, d_o), grads, dt
    )

    def g_objective(gt, gn, dn):
        fake, gn = gen.stateless_call(
            gt, gn, self.generator_inputs(z_g, labels), training=True
        )
        scores, dn = disc.stateless_call(dt, dn, d_inputs(fake, labels), training=True)
        return losses.generator_loss(self.loss_name, scores), (gn, dn)

    (g_loss, (gn, dn)), grads = jax.value_and_grad(g_objective, has_aux=True)(
        gt, gn, dn
    )
    gt, g_opt = self.generator_optimizer.stateless_apply(
        take(optimizer_vars, g_o), grads, gt
    )

    def put(values, where, new):
        values = list(values)
        for i, value in zip(where, new, strict=True):
            values[i] = value
        return values

    trainable = put(put(trainable, g_t, gt), d_t, dt)
    non_trainable = put(put(non_trainable, g_n, gn), d_n, dn)
    optimizer_vars = put(put(optimizer_vars, g_o, g_opt), d_o, d_opt)
    return d_loss, g_loss, trainable, non_trainable, optimizer_vars


STEPS = {
    "tensorflow": tf_train_step,
    "torch": torch_train_step,
    "jax": jax_train_step,
}
