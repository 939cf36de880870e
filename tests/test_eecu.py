"""EECU accounting: the cost model, the journal across runs, and what ``plan`` shows of them."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from engine.errors import ConfigError
from engine.run import eecu
from engine.run.context import build_context
from engine.run.eecu_journal import Entry, append, history, month_hours, outlook, read

NOW = dt.datetime(2026, 12, 5, 12, tzinfo=dt.timezone.utc)
SCENE = ["--aoi", "091084", "--mission", "L8", "--start", "2019-01-01", "--end", "2021-01-01"]


def _entry(op: str, stage: str = "train", eecu_s: float = 10.0, px: float = 1e4, project: str = "p",
           service: str = "https://earthengine.googleapis.com", shape: str = "L8/30m", when: dt.datetime = NOW) -> Entry:
    return Entry(op, project, service, shape, stage, eecu_s, px, when.timestamp())


def _ctx(**values):
    base = {"OPTICAL_MISSION": "L8", "START_DATE": "2021-01-01", "END_DATE": "2022-01-01", "BACKEND": "gee"}
    return build_context(None, {**base, **values}, "145.770,-17.070,145.782,-17.059")


def test_the_journal_keeps_each_operation_once_and_skips_a_damaged_line(eecu_journal):
    assert append([_entry("op/1"), _entry("op/2")]) == 2
    assert append([_entry("op/2"), _entry("op/3")]) == 1  # op/2 journaled already
    with eecu_journal.open("a") as f:
        f.write('{"operation": "op/4", "cut by a cra')  # a crash mid-line
    assert sorted(e.operation for e in read()) == ["op/1", "op/2", "op/3"]
    assert len(eecu_journal.read_text().splitlines()) == 4


def test_month_use_counts_this_month_of_this_project_on_this_service():
    last_month = NOW.replace(day=1, hour=0) - dt.timedelta(seconds=1)
    entries = [_entry("a", eecu_s=3600), _entry("b", eecu_s=1800), _entry("c", eecu_s=3600, when=last_month),
               _entry("d", eecu_s=3600, project="other"), _entry("e", eecu_s=3600, service="loopback")]
    assert month_hours(entries, "p", "https://earthengine.googleapis.com", NOW) == pytest.approx(1.5)


def test_the_estimate_takes_the_recorded_rate_once_enough_operations_reported():
    ctx = _ctx()
    units = eecu.pixel_dates(ctx)
    prior = eecu.estimate(ctx)
    assert prior.basis == {"train": "prior", "finish": "prior"}  # no mosaics exported by default
    assert prior.hours["train"] == pytest.approx(units["train"] * eecu.PRIOR_RATES["train"] / 3600)
    rate = 4 * eecu.PRIOR_RATES["train"]
    entries = [_entry(f"op/{i}", eecu_s=rate * 1e4, px=1e4, shape=eecu.shape_key(ctx.params)) for i in range(3)]
    few = eecu.estimate(ctx, history(entries[:2], eecu.shape_key(ctx.params), "https://earthengine.googleapis.com"))
    assert few.basis["train"] == "prior"
    rec = history(entries, eecu.shape_key(ctx.params), "https://earthengine.googleapis.com")
    refined = eecu.estimate(ctx, rec)
    assert refined.basis == {"train": "3 recorded operations", "finish": "prior"}
    assert refined.hours["train"] == pytest.approx(4 * prior.hours["train"])
    assert history(entries, "another shape", "https://earthengine.googleapis.com") == {}


def test_usage_sums_what_operations_reported_and_counts_the_silent_ones():
    u = eecu.usage([("train", 7.0, 1e3), ("outputs", 2.5, 1e3), ("images", 0.5, 1e3), ("mosaic:outputs", 1.0, 1e5),
                    ("train", None, 1e3)])
    assert u["total_eecu_seconds"] == pytest.approx(11.0) and u["operations"] == 4
    assert {g: v["eecu_seconds"] for g, v in u["by_stage"].items()} == {"train": 7.0, "finish": 3.0, "mosaic": 1.0}
    assert u["unreported_operations"] == 1


def test_the_tier_comes_from_the_config_then_the_environment():
    p = _ctx().params
    assert eecu.tier(p, {}) == "community" and eecu.tier(p, {"EE_TIER": "Partner"}) == "partner"
    assert eecu.tier(_ctx(EE_TIER="contributor").params, {"EE_TIER": "partner"}) == "contributor"
    with pytest.raises(ConfigError, match="EE_TIER 'gold' is not an Earth Engine quota tier"):
        eecu.tier(p, {"EE_TIER": "gold"})


def test_outlook_adds_the_months_use_to_the_estimate(eecu_journal, monkeypatch):
    ctx = _ctx()
    service = "https://earthengine.googleapis.com"
    append([_entry("big", eecu_s=149.999 * 3600, when=NOW)])
    o = outlook(ctx, "p", service, now=NOW)
    assert o.month_hours == pytest.approx(149.999) and o.quota_hours == 150 and o.over_quota
    assert not outlook(ctx, "another-project", service, now=NOW).over_quota
    monkeypatch.setenv("EE_TIER", "commercial")
    assert outlook(ctx, "p", service, now=NOW).quota_hours is None


def test_plan_of_a_scene_shows_the_eecu_estimate_against_the_tier(run_cli, tmp_path, monkeypatch):
    code, out, err = run_cli("plan", "--backend", "gee", *SCENE, "--run-dir", str(tmp_path / "a"))
    assert code == 0, err
    assert "Earth Engine compute ~" in out and "EECU-h (train" in out
    assert "OVER the community tier's 150 EECU-h a month" in out  # two years of a scene: more than a month
    monkeypatch.setenv("EE_TIER", "partner")
    code, out, err = run_cli("plan", "--backend", "gee", *SCENE, "--run-dir", str(tmp_path / "b"))
    assert code == 0 and "against the partner tier's 100,000 EECU-h a month" in out and "OVER" not in out
    code, out, err = run_cli("plan", *SCENE, "--run-dir", str(tmp_path / "c"))
    assert code == 0 and "none (local backend); as gee: ~" in out


def test_a_bad_tier_is_one_line(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("EE_TIER", "gold")
    code, out, err = run_cli("plan", "--backend", "gee", *SCENE, "--run-dir", str(tmp_path / "a"))
    assert code != 0 and "EE_TIER 'gold'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists()


def test_an_old_ledger_without_operations_reads_as_none(tmp_path):
    import sqlite3

    from engine.run.ledger import Ledger

    path = tmp_path / "ledger.sqlite"
    with Ledger(path):
        pass
    con = sqlite3.connect(path)
    con.execute("DROP TABLE operations")
    con.commit()
    con.close()
    with Ledger(path, read_only=True) as ledger:
        assert ledger.operations() == []
    assert json.dumps(eecu.run_usage(Ledger(path, read_only=True)))  # serialisable for the manifest
