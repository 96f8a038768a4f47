"""A sigmoid gate instead of the softmax: each input column is let through by its own
sigmoid, so several columns can be open at once (data=xor needs two).

    python -m attnlab -m model=custom model.builder=examples.custom_gate.gate:build \
        data=xor model.hidden_activation=relu model.attention=learned,uniform

attnlab calls build(x, context) with the replica-major inputs x, (replicas, batch,
features), and adds the softmax head after what it returns. It reads the layer named
`attention_vec` (here the sigmoid gate) as the attention, normalised per sample to shares
that sum to 1 (attnlab.engine.experiment).
"""

from __future__ import annotations

from keras import KerasTensor

from attnlab.engine.layers import ReplicaDense
from attnlab.engine.models import BuildContext


def build(x: KerasTensor, context: BuildContext) -> KerasTensor:
    """x gated column by column, then Dense(model.hidden): (replicas, batch, hidden)."""

    def sigmoid_gate(h: KerasTensor, seeds: list[int], name: str) -> KerasTensor:
        # One weight slice per seed (salt 0: the same draw as dense's softmax layer).
        return ReplicaDense(context.features, seeds, salt=0, activation="sigmoid", name=name)(h)

    gated = context.gate(x, sigmoid_gate)  # model.attention=uniform/oracle/none: the controls
    m = context.model
    return ReplicaDense(
        m.hidden, context.seeds, salt=1, activation=m.hidden_activation, name="hidden"
    )(gated)
