"""Every attention metric against numbers worked out by hand."""

import math

import numpy as np
import pytest

from attnlab.engine.metrics import accuracy, attention_metrics, shuffle_column, still_improving

# 4 probe samples over 4 columns; the key is column 1.
ALPHA = np.array(
    [
        [0.1, 0.6, 0.2, 0.1],  # argmax 1 (the key)
        [0.1, 0.5, 0.3, 0.1],  # argmax 1
        [0.2, 0.2, 0.5, 0.1],  # argmax 2
        [0.25, 0.25, 0.25, 0.25],  # tie: argmax is the first, column 0
    ]
)


def test_attention_metrics_match_hand_computation():
    m = attention_metrics(ALPHA, key=1)
    # mean vector: [0.1625, 0.3875, 0.3125, 0.1375]
    assert m["attn_key_weight"] == pytest.approx(0.3875)
    assert m["attn_peak_column"] == 1
    assert m["attn_peak_weight"] == pytest.approx(0.3875)
    assert m["attn_focused"] is True
    assert m["attn_hit_rate"] == pytest.approx(0.5)
    assert m["attn_key_rank"] == 1
    assert m["attn_margin"] == pytest.approx(0.3875 - 0.3125)

    def h(p):
        return -sum(x * math.log(x) for x in p) / math.log(4)

    assert m["attn_entropy"] == pytest.approx(np.mean([h(row) for row in ALPHA]))


def test_unfocused_attention_rank_and_negative_margin():
    m = attention_metrics(ALPHA, key=3)
    assert m["attn_focused"] is False
    assert m["attn_peak_column"] == 1
    assert m["attn_key_rank"] == 4
    assert m["attn_hit_rate"] == 0.0
    assert m["attn_margin"] == pytest.approx(0.1375 - 0.3875)


def test_entropy_bounds_one_hot_and_uniform():
    one_hot = np.eye(8)[[2, 2, 2]]
    assert attention_metrics(one_hot, key=2)["attn_entropy"] == 0.0
    assert attention_metrics(np.full((5, 8), 1 / 8), key=2)["attn_entropy"] == pytest.approx(1.0)


def test_accuracy_is_per_replica():
    probs = np.zeros((4, 2, 3))
    probs[:, 0, 1] = 1  # replica 0 always says 1
    probs[:, 1, 2] = 1  # replica 1 always says 2
    y = np.array([[1, 2], [1, 0], [0, 2], [1, 2]])
    np.testing.assert_allclose(accuracy(probs, y), [0.75, 0.75])


def test_shuffle_column_keeps_marginal_and_only_that_column():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 2, 5))
    out = shuffle_column(x, np.array([1, 3]), [np.random.default_rng(1), np.random.default_rng(2)])
    for r, col in enumerate([1, 3]):
        assert sorted(out[:, r, col]) == sorted(x[:, r, col])
        assert not np.array_equal(out[:, r, col], x[:, r, col])
        others = [c for c in range(5) if c != col]
        np.testing.assert_array_equal(out[:, r, others], x[:, r, others])


@pytest.mark.parametrize(
    ("curve", "expected"),
    [
        ([0.5], None),  # one epoch: nothing to compare with
        ([0.5, 0.52], True),  # 2 epochs: epoch 1 -> 2
        ([0.5, 0.51], False),  # a rise of exactly 0.01 does not count
        ([0.1, 0.5, 0.52], True),  # 3 epochs: epoch 2 -> 3
        ([0.1, 0.5, 0.505], False),  # rose early, flat over the last epoch
        ([0.1, 0.2, 0.5, 0.505], False),  # 4 epochs: epoch 3 -> 4
        ([0.1, 0.2, 0.5, 0.52], True),
        ([0.9, 0.5, 0.4, 0.3], False),  # falling
        ([0.5, np.nan], None),  # a diverged run's curve
    ],
)
def test_still_improving_on_short_hand_made_histories(curve, expected):
    assert still_improving(np.array(curve)) is expected


def test_still_improving_compares_the_last_quarter_of_20_epochs():
    curve = np.linspace(0.3, 0.7, 20)  # +0.021 an epoch
    assert still_improving(curve) is True
    flat = np.concatenate([np.linspace(0.3, 0.7, 15), np.full(5, 0.7)])
    assert still_improving(flat) is False  # epochs 15 -> 20: no rise
    flat[19] = 0.7105
    assert still_improving(flat) is True
    flat[14] = 0.7104  # epoch 15 is the start: epoch 14's value does not count
    assert still_improving(flat) is False
