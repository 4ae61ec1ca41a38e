"""Where the time went (tuner.engine.ledger) and what a run costs
(tuner.engine.budget): pure bookkeeping, no TensorFlow."""

from __future__ import annotations

import pytest

from tuner.engine import ledger
from tuner.engine.budget import COLD, LATER, WARM, EpochCosts, cost_key


def test_a_runs_first_epoch_excess_is_tracing_and_the_rest_is_its_parts():
    book = ledger.TimeLedger()
    book.add("build", 2.0)
    book.add_run([(30.0, 6.0), (10.0, 2.0), (11.0, 2.0), (9.0, 2.0)], first_of_build=True)
    assert book.parts["tracing"] == pytest.approx(20.0 + 4.0)
    assert book.parts["training"] == pytest.approx(40.0) and book.parts["validation"] == pytest.approx(8.0)
    # a later run of one epoch takes its base from the epochs seen before
    book.add_run([(14.0, 3.0)], first_of_build=False)
    assert book.parts["tracing"] == pytest.approx(24.0 + 4.0 + 1.0)
    record = book.close(total=100.0)
    assert record["total"] == 100.0
    assert sum(v for k, v in record.items() if k != "total") == pytest.approx(100.0)
    assert record["other"] == pytest.approx(100.0 - 2.0 - 29.0 - 50.0 - 10.0)
    line = ledger.describe(record)
    assert line.startswith("1m40s: training 50%") and "tracing and warm-up 29%" in line


def test_runs_are_recorded_per_tuner_and_summed(tmp_path):
    ledger.record_run(str(tmp_path), "tuner0", {"total": 60.0, "training": 40.0, "validation": 20.0})
    ledger.record_run(str(tmp_path), "tuner0", {"total": 30.0, "training": 10.0, "validation": 20.0})
    ledger.record_run(str(tmp_path), "worker-a", {"total": 10.0, "training": 10.0})
    runs = ledger.load_runs(str(tmp_path))
    assert len(runs) == 3
    assert ledger.totals(runs)["validation"] == 40.0
    assert ledger.describe(ledger.totals(runs), len(runs)).startswith("1m40s (3 runs): training 60%, validation 40%")
    assert ledger.load_runs(str(tmp_path / "nowhere")) == []


def test_the_cost_key_separates_what_changes_an_epochs_time():
    base = {"backbone": "resnet50v2", "image_size": 64, "weights": "imagenet", "fine_tune": "full",
            "batch_per_replica": 16, "precision": "float32", "learning_rate": 1e-3}
    assert cost_key(base) == cost_key({**base, "learning_rate": 1e-4, "callback": "none"})
    for change in ({"image_size": 96}, {"fine_tune": "frozen"}, {"batch_per_replica": 32},
                   {"precision": "mixed_bfloat16"}, {"backbone": "resnet50"},
                   {"fine_tune": "top", "fine_tune_blocks": 2}):
        assert cost_key({**base, **change}) != cost_key(base), change
    # without pretrained weights every trial trains the whole backbone
    assert cost_key({**base, "weights": "none", "fine_tune": "frozen"}) == cost_key({**base, "weights": "none"})


def test_a_warm_runs_first_epoch_is_costed_apart_and_cold_until_measured():
    costs = EpochCosts()
    costs.add("k", 40.0, COLD)
    costs.add("k", 10.0, LATER)
    assert costs.seconds("k", 3) == 60.0
    assert costs.seconds("k", 3, warm=True) == 60.0  # not measured yet: an upper bound
    costs.add("k", 14.0, WARM)  # build, state copy, restore and caches, no tracing
    assert costs.seconds("k", 3, warm=True) == 34.0 and costs.seconds("k", 3) == 60.0
    again = EpochCosts()
    again.set_state(costs.get_state())
    assert again.seconds("k", 3, warm=True) == 34.0


def test_with_validation_every_k_epochs_the_first_validated_epoch_holds_the_evaluations_tracing():
    book = ledger.TimeLedger()
    # validation at epochs 3 and 6 only; the first evaluation (epoch 3) traces
    book.add_run([(30.0, 0.0), (10.0, 0.0), (10.0, 9.0), (10.0, 0.0), (10.0, 0.0), (10.0, 3.0)],
                 first_of_build=True)
    assert book.parts["validation"] == pytest.approx(6.0)
    assert book.parts["tracing"] == pytest.approx(20.0 + 6.0)
    assert book.parts["training"] == pytest.approx(60.0)
