"""`benchmarks.data.validate_shift`: the hook that times validate for a first run and for a run
over the window shifted by one day (the ledger's target: the second checks only the new day)."""
from benchmarks.data import validate_shift
from components import ingest


def test_validate_shift_times_a_first_and_a_shifted_run(make_ctx, tmp_path):
    ctx = make_ctx(date="1998-03-01")
    ingest.run(ctx)
    conf = {"dataset": "ml100k", "date": "1998-03-01", "paths.data": str(tmp_path / "data"),
            "paths.artifacts": str(tmp_path / "artifacts"), "window.train_days": 14}
    shift = validate_shift(tmp_path, conf, isolate=False)
    first, second = shift["first"], shift["second"]
    assert first["date"] == "1998-02-28" and first["trusted"] == 0 and first["checked"] > 1
    assert second["date"] == "1998-03-01" and second["checked"] == 1 and second["trusted"] == first["checked"]
    assert 0 < second["checked_rows"] < first["checked_rows"]
    assert shift["ratio"] == second["seconds"] / first["seconds"]
