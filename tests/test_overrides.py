"""Every id and value attnlab hands to Hydra as an override reads back unchanged through
Hydra's own parser (issue 19, item 1: a pack id of 7 digits and an `e`, `8490098e-000`,
read as the float 8490098.0 and failed one sweep in ~500).

Checked over many random draws, the ids that look like numbers included, and through the
config loader a launcher uses to compose each job.
"""

from __future__ import annotations

import os
import random
import string
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser

from attnlab.sweep.callback import resume_command
from attnlab.sweep.cells import PACK_ENV, hydra_value
from attnlab.sweep.planner import expand, pack_name, pack_override

PARSER = OverridesParser.create()


def parsed(line: str) -> object:
    return PARSER.parse_override(line).value()


def run_ids(draws: int, rng: random.Random) -> list[str]:
    """Run ids as attnlab makes them (16 hex digits), plus the forms Hydra reads as
    numbers: 7 or 8 digits with an `e`, all digits, `inf`/`nan`-like prefixes."""
    ids = [os.urandom(8).hex() for _ in range(draws)]
    for _ in range(draws):
        digits = "".join(rng.choice(string.digits) for _ in range(7))
        ids.append(digits + "e" + "".join(rng.choice("0123456789abcdef") for _ in range(8)))
        ids.append("".join(rng.choice(string.digits) for _ in range(16)))
    ids += ["8490098e0000000", "1234567e", "0000000e", "infabcde", "nan12345", "00000000"]
    return ids


def test_every_pack_override_reads_back_as_its_pack_id():
    rng = random.Random(19)
    for run_id in run_ids(300, rng):
        for index in (0, 123):
            pack_id = pack_name(run_id, index)
            line = pack_override(pack_id)
            assert line.startswith(f"++hydra.job.env_set.{PACK_ENV}=")
            assert parsed(line) == pack_id, (run_id, line)


def test_the_reported_pack_id_reaches_the_job_as_a_string(tmp_path):
    from .test_planner import compose_sweep

    config, context = compose_sweep(tmp_path / "sweep", [])
    composed = context.config_loader.load_sweep_config(
        config, ["data.classes=2", pack_override("8490098e-000")]
    )
    assert composed.hydra.job.env_set[PACK_ENV] == "8490098e-000"


def random_text(rng: random.Random) -> str:
    """Strings that trip a parser: numbers, keywords, quotes, backslashes, commas, spaces."""
    pieces = [
        "8490098e-000", "1e5", "null", "true", "nan", "inf", "0x1f", "'", '"', "\\", ",",
        " ", "=", "[", "]", "{", "}", "a", "b7", "-", ".", "/", ":", "${", "(", ")", "~",
    ]  # fmt: skip
    return "".join(rng.choice(pieces) for _ in range(rng.randint(1, 6)))


def test_hydra_value_round_trips_random_strings():
    rng = random.Random(7)
    for _ in range(1000):
        text = random_text(rng)
        assert parsed(f"k={hydra_value(text)}") == text, text


def test_the_resume_line_names_a_sweep_dir_hydra_reads_back(monkeypatch):
    rng = random.Random(3)
    for name in ["1e5", "8490098e-000", "null", "a,b", "x y", "it's", "2026-12-03/10-00-00"]:
        monkeypatch.setattr("sys.argv", ["attnlab", "-m", "data.classes=2,5"])
        sweep_dir = Path("/tmp") / name
        line = resume_command(sweep_dir)
        import shlex

        given = [arg for arg in shlex.split(line) if arg.startswith("hydra.sweep.dir=")]
        assert parsed(given[0]) == str(sweep_dir), line
    for _ in range(200):
        sweep_dir = Path("/tmp") / random_text(rng).replace("/", "_")
        monkeypatch.setattr("sys.argv", ["attnlab", "-m"])
        given = [a for a in __import__("shlex").split(resume_command(sweep_dir)) if "=" in a]
        assert parsed(given[-1]) == str(sweep_dir)


def test_expanded_job_overrides_read_back_as_the_values_given():
    rng = random.Random(11)
    for _ in range(200):
        texts = [random_text(rng) for _ in range(rng.randint(1, 3))]
        line = "data.name=" + ",".join(hydra_value(t) for t in texts)
        jobs = expand(PARSER.parse_overrides([line]))
        assert [parsed(job[0]) for job in jobs] == [parsed(f"k={hydra_value(t)}") for t in texts]
