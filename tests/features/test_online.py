"""Online hand-off: after materializing the run date, the online store serves the latest values."""
import pandas as pd

from components import build_features, ingest, materialize, validate
from features.store import open_store

DAY = "1998-03-01"


def test_online_features_equal_the_latest_offline_values(make_ctx):
    ctx = make_ctx(date=DAY)
    ingest.run(ctx)
    build_features.run(ctx)
    validate.run(ctx)
    result = materialize.run(ctx)
    assert set(result.views) == {f"ml100k_{v}" for v in ("user_profile", "item_profile", "user_activity", "item_activity")}

    offline = pd.read_parquet(ctx.layout.entity_table("user_activity") / f"dt={DAY}" / ingest.PART)
    users = offline["user_id"].head(5).tolist()
    store = open_store(ctx.layout)
    refs = [f"ml100k_user_activity:{c}" for c in ("u_imp_7d", "u_like_rate_30d")] + ["ml100k_user_profile:age"]
    online = store.get_online_features(features=refs, entity_rows=[{"user_id": u} for u in users]).to_df()
    expected = offline.set_index("user_id").loc[users]
    assert online["u_imp_7d"].tolist() == expected["u_imp_7d"].tolist()
    assert (online["u_like_rate_30d"] - expected["u_like_rate_30d"].to_numpy()).abs().max() < 1e-12
    profiles = pd.read_parquet(ctx.layout.entity_table("users") / ingest.PART).set_index("user_id")
    assert online["age"].tolist() == profiles.loc[users, "age"].tolist()
