"""The training loop's own pieces: the fused Adam against Keras' Adam."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from attnlab.data import make_replica_data
from attnlab.models import build_model, logits_model
from attnlab.train import FusedAdam, make_epoch_fn, shuffled_indices


@pytest.mark.parametrize("model", ["model=dense", "model=double", "model=lstm"])
def test_fused_adam_trains_as_keras_adam(make_config, model):
    # 400 training samples: the last of 7 batches has 16, so the partial batch is covered.
    cfg = make_config(model, "data.samples=500", "data.classes=5", "seeds=[0,1,2]")
    data = make_replica_data(cfg.data, cfg.seeds, 0.2, cfg.model.sequence)
    x, y = tf.constant(data.x_train), tf.constant(data.y_train)
    orders = shuffled_indices(cfg.seeds, len(data.y_train), 3)

    def trained(fused: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
        keras.backend.clear_session()
        model = logits_model(build_model(cfg.model, cfg.data, cfg.seeds))
        weights = model.trainable_variables
        if fused:
            apply = FusedAdam(weights, cfg.trainer.learning_rate).apply
        else:
            optimizer = keras.optimizers.Adam(cfg.trainer.learning_rate)
            optimizer.build(weights)
            apply = lambda grads: optimizer.apply_gradients(zip(grads, weights, strict=True))  # noqa: E731
        epoch = make_epoch_fn(model, apply, x, y, batch_size=64)
        losses = [epoch(tf.constant(order)).numpy() for order in orders]
        return losses, [w.numpy() for w in weights]

    fused_losses, fused_weights = trained(fused=True)
    keras_losses, keras_weights = trained(fused=False)
    np.testing.assert_allclose(fused_losses, keras_losses, rtol=1e-5)
    assert fused_losses[-1].max() < fused_losses[0].min()  # it did train
    for fused_w, keras_w in zip(fused_weights, keras_weights, strict=True):
        np.testing.assert_allclose(fused_w, keras_w, atol=1e-5)
