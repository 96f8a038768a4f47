"""Claims (issue 21): the grammar, verdicts on constructed data, pairing by seed, the family
correction's error rate under a null, claims.csv and report.md on a synthetic sweep dir,
the presets' claims, and (slow) a real tiny sweep and a refused claim on the command line."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from scipy import stats

from attnlab.engine import paired
from attnlab.engine.claims import (
    EXTRA_COLUMNS,
    FIXED_COLUMNS,
    ClaimError,
    evaluate_claims,
    family_level,
    judge_rate_pairs,
    judge_values,
    parse_claim,
)
from attnlab.engine.config import ConfigError, flatten
from attnlab.engine.metrics import RUN_METRICS
from attnlab.engine.sequential import Claim, confidence_sequence, snap_to_bounds
from attnlab.engine.stats import t_interval, wilson_interval
from attnlab.runs.records import NOT_IDENTITY, REPORT_FILES, cell_name, identity_key
from attnlab.runs.report import main, write_report

from .conftest import DEBUG_TINY, one_line_error, run_cli, shown

KEYS = ["data.classes", "model.attn_layers", "model.attention"]

# --- grammar ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "at", "metric", "op", "threshold", "comparison"),
    [
        ("focus_rate > 0.5", (), "focus_rate", ">", 0.5, None),
        ("val_accuracy>=0.9", (), "val_accuracy", ">=", 0.9, None),
        ("attn_key_weight ≥ 0.2", (), "attn_key_weight", ">=", 0.2, None),
        (
            "at data.classes=20, model.attn_layers=1: focus_rate > 0.5",
            (("data.classes", "20"), ("model.attn_layers", "1")),
            "focus_rate",
            ">",
            0.5,
            None,
        ),
        (
            "val_accuracy of model.attention=oracle <= learned",
            (),
            "val_accuracy",
            "<=",
            0.0,
            ("model.attention", "oracle", "learned"),
        ),
        (
            "at data.classes=50:val_accuracy of model.attention=oracle ≤ learned",
            (("data.classes", "50"),),
            "val_accuracy",
            "<=",
            0.0,
            ("model.attention", "oracle", "learned"),
        ),
    ],
)
def test_accepted_forms(text, at, metric, op, threshold, comparison):
    stated = parse_claim(text, KEYS)
    assert stated.text == text and stated.at == at
    assert stated.claim == Claim(metric, op, threshold)
    assert (stated.key, stated.a, stated.b) == (comparison or (None, None, None))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "non-empty"),
        ("focus_rate", "neither form"),
        ("focus_rate == 0.5", "neither form"),
        ("focus_rate > high", "neither form"),
        ("val_accuracy > 1.2.3", "neither form"),
        ("at data.classes=20 focus_rate > 0.5", "end with a colon"),
        ("at data.classes: focus_rate > 0.5", "not a KEY=VALUE condition"),
        ("at data.classes=20,: focus_rate > 0.5", "not a KEY=VALUE condition"),
        ("accuracy > 0.5", "unknown metric 'accuracy'"),
        ("attn_focused > 0.5", "unknown metric 'attn_focused'"),
        ("at data.klasses=20: focus_rate > 0.5", "unknown key 'data.klasses' (did you mean"),
        ("val_accuracy of model.attn=oracle < learned", "unknown key 'model.attn'"),
        ("val_accuracy of model.attention=oracle < oracle", "two different values"),
        ("at data.classes=2, data.classes=5: focus_rate > 0.5", "named twice"),
        ("at model.attention=oracle: val_accuracy of model.attention=oracle < learned", "twice"),
        ("val_accuracy of model.attention=oracle << learned", "neither form"),
    ],
)
def test_refused_forms_are_one_line_naming_the_claim_and_the_forms(text, why):
    with pytest.raises(ClaimError) as refused:
        parse_claim(text, KEYS)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"claims={text!r} is not allowed: "), message
    assert why in message
    assert "METRIC OP NUMBER" in message and "METRIC of KEY=A OP B" in message


def test_a_bad_claim_in_the_config_is_a_config_error(make_config):
    with pytest.raises(ConfigError) as refused:
        make_config('claims=["focus_rate >> 0.5"]').validate(activations=False)
    assert str(refused.value).startswith("claims='focus_rate >> 0.5' is not allowed")
    make_config(
        'claims=["at data.classes=2: focus_rate > 0.5", "val_accuracy of model.attention=oracle'
        ' ≤ learned"]'
    ).validate(activations=False)


def test_claims_are_not_part_of_a_cell(make_config):
    """A cell's identity and dir name do not change with claims, and a record written before
    the key existed names the same cell."""
    plain = flatten(make_config("data.classes=20"))
    stated = flatten(make_config("data.classes=20", 'claims=["focus_rate > 0.5"]'))
    assert stated["claims"] == ["focus_rate > 0.5"] and plain["claims"] == []
    old = {k: v for k, v in plain.items() if k != "claims"}  # attnlab before claims
    assert "claims" in NOT_IDENTITY and "claims.csv" in REPORT_FILES
    assert identity_key(stated) == identity_key(plain) == identity_key(old)
    defaults = flatten(make_config())
    name = cell_name(stated, defaults)
    assert name == cell_name(plain, defaults) == cell_name(old, defaults)
    assert name.startswith("data.classes=20-") and "claims" not in name


# --- verdicts on constructed data --------------------------------------------------------


def rows(config: dict[str, Any], values: dict[str, list[Any]], seeds=None, status=None):
    """report.csv rows of one cell: config, seed, status, metrics."""
    n = len(next(iter(values.values())))
    seeds = seeds if seeds is not None else list(range(n))
    return [
        {
            **config,
            "seed": seed,
            "status": (status or ["completed"] * n)[i],
            **{k: v[i] for k, v in values.items()},
        }
        for i, seed in enumerate(seeds)
    ]


HIGH = [0.91, 0.93, 0.95, 0.92, 0.94]
LOW = [0.31, 0.33, 0.35, 0.32, 0.34]
SPREAD = [0.2, 0.9, 0.4, 0.8, 0.6]


def three_cells() -> pd.DataFrame:
    table = rows({"data.classes": 2}, {"val_accuracy": HIGH, "attn_focused": [True] * 5})
    table += rows({"data.classes": 20}, {"val_accuracy": SPREAD, "attn_focused": [1, 0, 1, 0, 1]})
    table += rows({"data.classes": 50}, {"val_accuracy": LOW, "attn_focused": [False] * 5})
    return pd.DataFrame(table)


def test_threshold_verdicts_and_summary_intervals():
    table = three_cells()
    judged = evaluate_claims(
        [
            "at data.classes=2: val_accuracy > 0.5",
            "at data.classes=20: val_accuracy > 0.5",
            "at data.classes=50: val_accuracy > 0.5",
            "at data.classes=20: focus_rate >= 0.5",
        ],
        table,
        ["data.classes"],
    )
    assert list(judged.columns) == [
        "claim",
        "data.classes",
        *FIXED_COLUMNS,
        *EXTRA_COLUMNS,
    ]
    assert list(judged["verdict"]) == ["holds", "unresolved", "fails", "unresolved"]
    assert list(judged["data.classes"]) == [2, 20, 50, 20]
    # one cell per claim: no correction, summary.csv's intervals
    assert set(judged["correction"]) == {"none (1 cell)"} and set(judged["level"]) == {0.95}
    row = judged.iloc[1]
    assert (row["estimate"], row["n_seeds"]) == (pytest.approx(np.mean(SPREAD)), 5)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(
        t_interval(np.array(SPREAD), 0.95, (0.0, 1.0))
    )
    assert row["interval"] == "Student t"
    focus = judged.iloc[3]
    assert focus["estimate"] == pytest.approx(0.6) and focus["interval"] == "Wilson"
    assert (focus["ci_low"], focus["ci_high"]) == pytest.approx(wilson_interval(3, 5))


def test_a_claim_at_many_cells_is_a_bonferroni_family():
    judged = evaluate_claims(["val_accuracy > 0.5"], three_cells(), ["data.classes"])
    assert len(judged) == 3 and list(judged["verdict"]) == ["holds", "unresolved", "fails"]
    assert set(judged["correction"]) == {"Bonferroni over 3 cells"}
    level = 1 - 0.05 / 3
    assert judged["level"].iloc[0] == pytest.approx(level)
    assert (judged["ci_low"].iloc[1], judged["ci_high"].iloc[1]) == pytest.approx(
        t_interval(np.array(SPREAD), level, (0.0, 1.0))
    )


def test_failed_and_diverged_seeds_follow_the_summary():
    status = ["completed", "cached", "diverged", "completed", "failed"]
    table = pd.DataFrame(
        rows({"data.classes": 2}, {"val_accuracy": [0.9, 0.8, math.nan, 0.7, 0.95]}, None, status)
        + rows({"data.classes": 5}, {"val_accuracy": [math.nan] * 2}, [0, 1], ["failed"] * 2)
    )
    judged = evaluate_claims(["val_accuracy > 0.5"], table, ["data.classes"])
    assert list(judged["n_seeds"]) == [3, 0]
    assert judged["estimate"].iloc[0] == pytest.approx(0.8)
    assert judged["verdict"].iloc[1] == "unresolved" and "no usable seeds" in judged["note"].iloc[1]
    assert set(judged["correction"]) == {"none (1 cell)"}  # the family: cells with values


def test_a_claim_that_applies_to_no_cell_is_kept_unresolved():
    judged = evaluate_claims(
        [
            "at data.classes=7: focus_rate > 0.5",
            "val_accuracy of data.classes=7 > 2",
            "at data.features=9: focus_rate > 0.5",
            "focus_rate >> 1",  # an old record's claim that no longer parses
        ],
        three_cells(),
        ["data.classes"],
    )
    assert list(judged["verdict"]) == ["unresolved"] * 4 and list(judged["n_seeds"]) == [0] * 4
    notes = list(judged["note"])
    assert notes[0] == "applies to no cell: no cell has data.classes=7"
    assert notes[1].startswith("applies to no cell: no pair of cells")
    assert "unknown key 'data.features'" in notes[2] and "is not allowed" in notes[3]


def test_the_sequence_rule_is_the_confidence_sequence():
    judged = evaluate_claims(
        ["at data.classes=20: val_accuracy > 0.5", "at data.classes=20: focus_rate > 0.5"],
        three_cells(),
        ["data.classes"],
        intervals="sequence",
    )
    assert (judged["ci_low"].iloc[0], judged["ci_high"].iloc[0]) == pytest.approx(
        confidence_sequence(SPREAD, (0.0, 1.0))
    )
    assert (judged["ci_low"].iloc[1], judged["ci_high"].iloc[1]) == pytest.approx(
        confidence_sequence([1, 0, 1, 0, 1], (0.0, 1.0))
    )
    assert set(judged["interval"]) == {"confidence sequence (betting)"}


def test_a_value_past_its_bound_by_float32_rounding_is_judged_not_refused():
    """Uniform attention's normalised entropy comes out as 1 + 2e-8 (float32): the sequence
    takes it as 1, as the metric's range says (a traceback before); a value really out of
    range is still refused."""
    entropy = [1.0 + 2.2e-8, 1.0 + 8e-9, 1.0, 1.0 + 1e-8, 1.0] * 4  # 20 seeds
    table = pd.DataFrame(rows({"data.classes": 2}, {"attn_entropy": entropy}))
    judged = evaluate_claims(["attn_entropy < 0.7"], table, ["data.classes"], intervals="sequence")
    assert judged["verdict"].iloc[0] == "fails"  # the sequence of 20 ones: [0.787, 1]
    assert judged["ci_high"].iloc[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="outside the metric's bounds"):
        confidence_sequence(snap_to_bounds([1.01, 1.0], (0.0, 1.0)), (0.0, 1.0))


# --- comparisons: pairing by seed --------------------------------------------------------

LEARNED = [0.70, 0.62, 0.81, 0.66, 0.74, 0.69]
ORACLE = [0.66, 0.60, 0.75, 0.61, 0.70, 0.64]


def controls(oracle_seeds=None) -> pd.DataFrame:
    table = []
    for classes, shift in ((20, 0.0), (50, -0.3)):
        learned = [v + shift for v in LEARNED]
        oracle = [v + shift for v in ORACLE]
        focus_l, focus_o = [1, 1, 0, 1, 0, 1], [1, 1, 1, 1, 1, 1]
        table += rows(
            {"data.classes": classes, "model.attention": "learned"},
            {"val_accuracy": learned, "attn_focused": focus_l},
        )
        table += rows(
            {"data.classes": classes, "model.attention": "oracle"},
            {"val_accuracy": oracle, "attn_focused": focus_o},
            oracle_seeds,
        )
    return pd.DataFrame(table)


def test_comparison_is_the_paired_t_of_the_per_seed_differences():
    keys = ["data.classes", "model.attention"]
    judged = evaluate_claims(
        ["val_accuracy of model.attention=oracle <= learned"], controls(), keys
    )
    assert list(judged.columns[:2]) == ["claim", "data.classes"]  # the cell's keys but KEY
    assert list(judged["data.classes"]) == [20, 50] and list(judged["n_seeds"]) == [6, 6]
    diff = np.subtract(ORACLE, LEARNED)
    expected = paired.paired_t(diff, family_level(0.95, 2))
    row = judged.iloc[0]
    assert row["estimate"] == pytest.approx(diff.mean())
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(
        (float(expected.ci_low), float(expected.ci_high))
    )
    assert (row["interval"], row["paired"], row["n_unpaired"]) == ("paired t", "by seed", 0)
    single = evaluate_claims(["focus_rate > 0.5"], controls(), keys)
    assert single["n_unpaired"].isna().all() and set(single["paired"]) == {""}
    assert list(judged["verdict"]) == ["holds", "holds"]
    assert stats.ttest_rel(ORACLE, LEARNED).pvalue < 0.001  # the data are a clear case


def test_pairing_ignores_row_order_and_drops_seeds_without_a_partner():
    keys = ["data.classes", "model.attention"]
    claim = ["val_accuracy of model.attention=oracle <= learned"]
    base = evaluate_claims(claim, controls(), keys)
    shuffled = controls().sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(evaluate_claims(claim, shuffled, keys), base)
    # oracle ran seeds 0-3 and 10, 11: seeds 4, 5 of learned and 10, 11 of oracle are dropped
    partial = evaluate_claims(claim, controls(oracle_seeds=[0, 1, 2, 3, 10, 11]), keys)
    assert list(partial["n_seeds"]) == [4, 4] and list(partial["n_unpaired"]) == [4, 4]
    diff = np.subtract(ORACLE[:4], LEARNED[:4])
    assert partial["estimate"].iloc[0] == pytest.approx(diff.mean())


def test_focus_rate_comparison_is_newcombes_paired_interval():
    keys = ["data.classes", "model.attention"]
    judged = evaluate_claims(
        ["at data.classes=20: focus_rate of model.attention=oracle > learned"], controls(), keys
    )
    row = judged.iloc[0]
    counts = paired.paired_counts([1] * 6, [1, 1, 0, 1, 0, 1])
    expected = paired.paired_rate_difference(*counts)
    assert row["estimate"] == pytest.approx(2 / 6) and row["interval"] == "Newcombe paired"
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(
        (float(expected.ci_low), float(expected.ci_high))
    )
    assert row["verdict"] == "unresolved"


# --- the family-wise error of "holds" under a null ---------------------------------------

FAMILIES = 2000
CELLS = 4
SEEDS = 8


def family_error(draw, claim: Claim, kind: str = "cell", seed: int = 0) -> float:
    """Share of simulated claims (each judged at CELLS cells or pairs, the true mean, or
    mean difference, exactly at the threshold) with any "holds", through the functions
    and the level evaluate_claims uses. kind: "cell" (a threshold claim), "pair" (a
    comparison of means: the per-seed differences), "rate pair" (of focus_rate flags)."""
    rng = np.random.default_rng(seed)
    level = family_level(0.95, CELLS)
    wrong = 0
    for _ in range(FAMILIES):
        verdicts = []
        for _cell in range(CELLS):
            if kind == "rate pair":
                judged = judge_rate_pairs(claim, draw(rng), draw(rng), "fixed", level)
            else:
                judged = judge_values(claim, draw(rng), "fixed", level, kind == "pair")
            verdicts.append(judged.verdict)
        wrong += "holds" in verdicts
    return wrong / FAMILIES


def mc_bound(rate: float = 0.05) -> float:
    return rate + 3 * math.sqrt(rate * (1 - rate) / FAMILIES)


def coin(rng: np.random.Generator) -> np.ndarray:
    """Eight seeds' attn_focused flags at a focus rate of exactly 1/2."""
    return (rng.random(SEEDS) < 0.5).astype(float)


def test_family_wise_error_of_holds_under_the_null():
    """Threshold claims at 4 cells, 8 seeds, true mean at the threshold: t and Wilson."""
    measured = {
        "t": family_error(lambda rng: rng.normal(0.7, 0.1, SEEDS), Claim("val_accuracy", ">", 0.7)),
        "Wilson": family_error(coin, Claim("focus_rate", ">", 0.5), seed=1),
    }
    assert all(rate <= mc_bound() for rate in measured.values()), measured
    assert measured["t"] > 0.01, measured  # the simulation sees errors: not vacuous


@pytest.mark.slow
def test_family_wise_error_of_holds_under_the_null_for_comparisons():
    """Comparison claims at 4 pairs of cells, 8 seeds, no true difference: paired t and
    Newcombe's paired interval (3 s: scipy's binomial per table)."""
    measured = {
        "paired t": family_error(
            lambda rng: rng.normal(0.0, 0.1, SEEDS), Claim("val_accuracy", "<", 0.0), "pair", 2
        ),
        "Newcombe": family_error(coin, Claim("focus_rate", ">", 0.0), "rate pair", 3),
    }
    assert all(rate <= mc_bound() for rate in measured.values()), measured
    assert measured["paired t"] > 0.01, measured


# --- claims.csv and report.md from a sweep dir -------------------------------------------


def write_cell(sweep: Path, name: str, config: dict[str, Any], runs: list[dict]) -> None:
    """A finished cell as attnlab writes it (cell.json and metrics.json), no training."""
    cell = sweep / name
    cell.mkdir(parents=True)
    full = {**config, "seeds": [r["seed"] for r in runs]}
    (cell / "cell.json").write_text(json.dumps({"config": full}))
    (cell / "metrics.json").write_text(json.dumps({"config": full, "runs": runs}))


def run_record(seed: int, acc: float, focused: bool) -> dict[str, Any]:
    record: dict[str, Any] = dict.fromkeys(RUN_METRICS, 0.5)
    record.update(seed=seed, status="completed", val_accuracy=acc, attn_focused=focused)
    record.update(attn_peak_column_name="x1", still_improving=False)
    return record


STATED = [
    "at data.classes=2: focus_rate > 0.5",
    "val_accuracy of model.attention=oracle <= learned",
    "at data.classes=99: val_accuracy > 0.5",
]


def claims_sweep(sweep: Path, claims: list[str] = STATED, other: list[str] | None = None) -> Path:
    accs = {"learned": [0.95, 0.9, 0.93, 0.96], "oracle": [0.85, 0.8, 0.82, 0.84]}
    for classes in (2, 20):
        for attention, acc in accs.items():
            config = {
                "data.classes": classes,
                "model.attention": attention,
                "model.attn_layers": 1,
                "claims": other if (other and classes == 20) else claims,
            }
            runs = [run_record(s, a - classes / 100, s != 3) for s, a in enumerate(acc)]
            write_cell(sweep, f"c{classes}-{attention}", config, runs)
    return sweep


@pytest.fixture
def no_figures(monkeypatch):
    """The report without its figures (a second each; claims draw none)."""
    from attnlab.runs import report

    monkeypatch.setattr(report, "write_figures", lambda *args: [])


def test_claims_csv_and_the_claims_section(tmp_path, no_figures):
    sweep = claims_sweep(tmp_path)
    write_report(sweep)
    table = pd.read_csv(sweep / "claims.csv")
    assert list(table.columns) == [
        "claim",
        "data.classes",
        "model.attention",
        *FIXED_COLUMNS,
        *EXTRA_COLUMNS,
    ]
    assert list(table["claim"]) == [STATED[0], STATED[0], STATED[1], STATED[1], STATED[2]]
    assert list(table["model.attention"].fillna("")) == ["learned", "oracle", "", "", ""]
    assert list(table["verdict"]) == ["unresolved", "unresolved", "holds", "holds", "unresolved"]
    assert "claims" not in pd.read_csv(sweep / "report.csv").columns  # not a config column
    summary = pd.read_csv(sweep / "summary.csv")
    assert "claims" not in summary.columns
    md = (sweep / "report.md").read_text()
    assert md.index("## How it was run") < md.index("## Claims") < md.index("## Cells")
    section = md[md.index("## Claims") : md.index("## Cells")]
    assert f"- `{STATED[1]}`: **holds** at all 2\n" in section
    assert "  - data.classes=2: **holds** -0.108 [-0.127, -0.088] (4 pairs)" in section
    assert f"- `{STATED[2]}`: **unresolved**; applies to no cell" in section
    assert "Bonferroni" in section and "different lists" not in section
    (sweep / "claims.csv").unlink()
    assert main([str(sweep)]) == 0  # python -m attnlab.report rebuilds it
    pd.testing.assert_frame_equal(pd.read_csv(sweep / "claims.csv"), table)


def test_cells_that_disagree_are_judged_on_the_union(tmp_path, no_figures):
    other = ["at data.classes=20: focus_rate > 0.9"]
    write_report(claims_sweep(tmp_path, STATED[:1], other))
    table = pd.read_csv(tmp_path / "claims.csv")
    assert list(pd.unique(table["claim"])) == [STATED[0], other[0]]
    md = (tmp_path / "report.md").read_text()
    assert "The cells state 2 different lists of claims" in md
    assert "- Swept: `data.classes`, `model.attention`" in md  # claims are no axis


def test_no_claims_no_claims_csv_nor_section(tmp_path, no_figures):
    write_report(claims_sweep(tmp_path, []))
    assert not (tmp_path / "claims.csv").exists()
    assert "## Claims" not in (tmp_path / "report.md").read_text()


# --- the presets carry the findings page's claims ----------------------------------------

PRESETS = [
    "blog_binary",
    "blog_classes",
    "blog_wide",
    "blog_deep",
    "blog_all",
    "blog_controls",
    "blog_budget",
    "blog_nonlinear",
]


def preset_values(preset: str) -> tuple[list[str], dict[str, list[str]], dict[str, Any]]:
    """(claims, key -> the values the preset's cells take, the config) of a preset."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="attnlab.conf", version_base="1.3"):
        cfg = compose("config", [f"+experiment={preset}"], return_hydra_config=True)
    swept = {k: str(v).split(",") for k, v in (cfg.hydra.sweeper.params or {}).items()}
    from attnlab.engine.config import from_hydra

    exp = from_hydra({k: v for k, v in cfg.items() if k != "hydra"})
    values = {k: [str(v)] for k, v in flatten(exp).items()}
    values.update(swept)
    return exp.claims, values, flatten(exp)


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_states_claims_that_can_apply(preset):
    claims, values, config = preset_values(preset)
    assert claims, f"{preset} states no claim"
    keys = [k for k in config if k not in ("seeds", "claims")]
    for text in claims:
        stated = parse_claim(text, keys)
        for key, value in stated.at:
            assert value in values[key], f"{preset}: {text}: {key} takes {values[key]}"
        if stated.comparison:
            assert stated.key is not None
            assert {stated.a, stated.b} <= set(values[stated.key]), (preset, text)


def test_blog_all_states_every_focus_claim_of_the_findings_page():
    from studies.blog.findings import CLAIMS

    claims, _, _ = preset_values("blog_all")
    for claim in CLAIMS:
        op = ">" if claim.focused else "<"
        at = (
            f"at data.classes={claim.classes}, data.features={claim.features}, "
            f"model.attn_layers={claim.attn_layers}"
        )
        assert f"{at}: focus_rate {op} 0.5" in claims, claim.text


# --- slow: a real tiny sweep, and a refused claim on the command line ---------------------


@pytest.mark.slow
def test_a_tiny_sweep_writes_its_claims(tmp_path):
    sweep = tmp_path / "sweep"
    claims = [
        "at data.classes=2: val_accuracy >= 0",
        "val_accuracy of data.classes=5 <= 2",
        "at data.classes=3: focus_rate > 0.5",
    ]
    proc = run_cli(
        [
            "-m",
            "data.classes=2,5",
            DEBUG_TINY,
            f"claims={json.dumps(claims)}",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, shown(proc)
    table = pd.read_csv(sweep / "claims.csv")
    assert list(table["claim"]) == claims
    assert list(table["n_seeds"]) == [2, 2, 0]
    assert table["verdict"].iloc[0] == "holds"  # an accuracy is never below 0
    assert table["verdict"].iloc[2] == "unresolved" and "applies to no cell" in table["note"][2]
    assert list(table["data.classes"].fillna(-1)) == [2, -1, -1]
    assert "## Claims" in (sweep / "report.md").read_text()


@pytest.mark.slow
def test_a_bad_claim_on_the_command_line_is_refused_before_anything(tmp_path):
    proc = run_cli(
        ["-m", "data.classes=2,5", DEBUG_TINY, 'claims=["focus_rate >> 0.5"]'], cwd=tmp_path
    )
    assert proc.returncode == 2, shown(proc)
    line = one_line_error(proc, "claims='focus_rate >> 0.5'", "METRIC OP NUMBER")
    assert line.startswith("attnlab: error: claims=")
    assert list(tmp_path.iterdir()) == []  # no sweep dir
