import re
from pathlib import Path

import pytest
import yaml

from core.config import DEFAULT_PARAMS, ConfigError, load_params
from core.spec import SpecError, load_spec


def test_params_yaml_loads_with_shortcut_overrides():
    p = load_params(overrides={"date": "1998-03-02", "train_days": 30, "backbone": "mmoe", "train.max_epochs": 3})
    assert p.date == "1998-03-02"
    assert p.window.train_days == 30
    assert p.train.max_epochs == 3
    assert p.model.backbone["name"] == "mmoe" and "num_experts" in p.model.backbone  # same name keeps hparams


def test_a_new_backbone_name_drops_the_old_hyper_parameters_and_renames_the_run():
    p = load_params(overrides={"backbone": "shared_bottom"})
    assert p.model.backbone == {"name": "shared_bottom"}
    assert p.model_name == "shared_bottom"


@pytest.mark.parametrize("bad", [{"date": "1998-13-01"}, {"dataset": "../etc"}, {"train_days": 0},
                                 {"nonsense": 1}, {"train.not_a_field": 1}])
def test_bad_run_conf_is_refused_with_a_clear_error(bad):
    with pytest.raises(ConfigError):
        load_params(overrides=bad)


def test_ml100k_spec_reads_tasks_and_features():
    spec = load_spec("ml100k")
    assert spec.task_names == ("like", "love", "rating")
    assert spec.binary_tasks == ("like", "love")
    assert dict((t.name, t.parent) for t in spec.tasks)["love"] == "like"
    assert spec.categorical[:2] == ("user_id", "item_id")


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(SpecError, match="ml100k"):
        load_spec("no_such_set")


# ------------------------------------------------------------------ unknown keys at every level

def test_an_unknown_top_level_block_is_refused_with_the_known_ones():
    """`--set trian.max_epochs=3` used to be dropped without a word."""
    with pytest.raises(ConfigError, match=r"'trian\.max_epochs'.*no params block 'trian'.*known: run, paths, window, "
                                          r"validate, train, model, gate, export, versioning"):
        load_params(overrides={"trian.max_epochs": 3})


def test_an_unknown_block_in_params_yaml_is_refused(tmp_path):
    path = tmp_path / "params.yaml"
    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    path.write_text(yaml.safe_dump({**raw, "trian": {"max_epochs": 3}}))
    with pytest.raises(ConfigError, match=r"unknown params block 'trian' \(known: run, paths,"):
        load_params(path)
    raw["train"]["max_epochz"] = 3
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"unknown key 'train\.max_epochz' \(known: seed, device, .*max_epochs"):
        load_params(path)


@pytest.mark.parametrize("key, known", [
    ("train.max_epochz", "seed, device, batch_size, learning_rate, weight_decay, max_epochs, patience, grad_clip_norm"),
    ("window.train_dayz", "train_days, valid_days, test_days"),
    ("validate.min_rows", "min_rows_per_day, trailing_days"),
    ("gate.max_auc_dropp", "auc_floor, max_auc_drop, calibration_band, ecpm"),
    ("gate.ecpm.kk", "k, min_uplift_lower, bootstrap, confidence, seed"),
    ("export.opsett", "opset, parity_atol"),
    ("versioning.remotes", "remote, local_remote, cache, jobs"),
    ("run.datset", "dataset, date, model_name"),
    ("paths.dat", "data, artifacts"),
    ("model.embeding_dim", "embedding_dim, tower_hidden, backbone, transfer"),
])
def test_an_unknown_key_inside_a_block_is_refused_with_the_known_ones(key, known):
    with pytest.raises(ConfigError, match=re.escape(f"unknown key {key!r} (known: {known}")):
        load_params(overrides={key: 1})


def test_values_are_converted_to_the_field_types_or_refused():
    p = load_params(overrides={"train.max_epochs": "3", "gate.calibration_band": [1, 2], "paths.data": "/tmp/d"})
    assert p.train.max_epochs == 3 and p.gate.calibration_band == (1.0, 2.0) and p.data_root == Path("/tmp/d")
    with pytest.raises(ConfigError, match=r"train\.max_epochs must be an int like its default 15, got 'three'"):
        load_params(overrides={"train.max_epochs": "three"})
    with pytest.raises(ConfigError, match=r"validate\.row_count_band has too few items"):
        load_params(overrides={"validate.row_count_band": [1.0]})


def test_an_unknown_backbone_hyper_parameter_is_refused_with_the_known_ones():
    from models.build import check_model_config

    params = load_params(overrides={"model.backbone.num_expert": 3})   # mmoe, as params.yaml has it
    with pytest.raises(ConfigError, match=re.escape("unknown key 'model.backbone.num_expert' "
                                                    "(known: num_experts, expert_hidden, dropout)")):
        check_model_config(params.model)
    params = load_params(overrides={"transfer": {"name": "ektm", "token": 4}})
    with pytest.raises(ConfigError, match=r"unknown key 'model\.transfer\.token' \(known: source, alpha, transmitter, "
                                          r"tokens"):
        check_model_config(params.model)
    params = load_params(overrides={"transfer": {"name": "crossdistil", "calibration": "False"}})
    with pytest.raises(ConfigError, match="calibration must be a bool"):   # "False" would read as true
        check_model_config(params.model)
    check_model_config(load_params(overrides={"backbone": {"name": "ple", "levels": 1}}).model)


def test_documented_configs_are_the_config_classes_defaults():
    from models.backbones import BACKBONE_CONFIG_CLASSES, DOCUMENTED_CONFIGS as BACKBONE_DOCS
    from models.transfer import DOCUMENTED_CONFIGS as TRANSFER_DOCS, TRANSFER_CONFIG_CLASSES

    for configs, docs in ((BACKBONE_CONFIG_CLASSES, BACKBONE_DOCS), (TRANSFER_CONFIG_CLASSES, TRANSFER_DOCS)):
        for name, cls in configs.items():
            defaults = {k: v for k, v in cls().model_dump().items() if v is not None}
            assert docs[name] == {"name": name, **defaults}
            for ablation, switches in cls.ablations.items():
                assert docs[ablation] == {"name": name, **switches.switches}
        assert set(docs) == set(configs) | {a for cls in configs.values() for a in cls.ablations}


# ------------------------------------------------------------------ the CLI's --conf = the trigger form's keys

def _cli_args(*argv):
    import argparse

    from mtrec.run_conf import add_run_args

    parser = argparse.ArgumentParser()
    add_run_args(parser)
    return parser.parse_args(list(argv))


def test_cli_conf_takes_the_trigger_form_keys_including_overrides():
    from mtrec.run_conf import overrides_from_args

    args = _cli_args("--conf", '{"overrides": {"train.max_epochs": 3}, "backbone": "ple", "train_days": 30, '
                               '"transfer": null}', "--set", "train.patience=4", "--date", "1998-03-02")
    overrides = overrides_from_args(args)
    assert overrides == {"train.max_epochs": 3, "backbone": "ple", "train_days": 30, "train.patience": 4,
                         "date": "1998-03-02"}
    p = load_params(overrides=overrides)
    assert (p.train.max_epochs, p.train.patience, p.model.backbone["name"], p.window.train_days) == (3, 4, "ple", 30)


def test_the_forms_backbone_and_transfer_pick_the_block_that_overrides_refine():
    """Whatever their order in the conf, `backbone`/`transfer` choose the block first; dotted keys
    then refine it (they used to land on the old block, which the choice then replaced)."""
    from mtrec.run_conf import form_overrides

    for conf in ({"transfer": "ektm", "backbone": "ple",
                  "overrides": {"model.transfer.alpha": 0.1, "model.backbone.levels": 1}},
                 {"overrides": {"model.transfer.alpha": 0.1, "model.backbone.levels": 1, "transfer": "ektm",
                                "backbone": "ple"}}):
        p = load_params(overrides=form_overrides(conf))
        assert p.model.transfer == {"name": "ektm", "alpha": 0.1}
        assert p.model.backbone == {"name": "ple", "levels": 1} and p.model_name == "ple"


@pytest.mark.parametrize("conf, match", [
    ('{"train.max_epochs": 3}', r"unknown --conf key 'train\.max_epochs' \(known: dataset, backbone, transfer, "
                                r"train_days, overrides, date"),
    ('{"overrides": {"trian.max_epochs": 3}}', "no params block 'trian'"),
    ('{"overrides": [1]}', "overrides must be an object"),
])
def test_cli_conf_refuses_what_the_form_refuses(conf, match):
    from mtrec.run_conf import overrides_from_args

    with pytest.raises(ConfigError, match=match):
        load_params(overrides=overrides_from_args(_cli_args("--conf", conf)))


# ------------------------------------------------------------------ resolved params round trip

def test_params_and_spec_round_trip_through_plain_dicts():
    import json

    from core.config import params_from_dict, params_to_dict
    from core.spec import spec_from_dict, spec_to_dict

    p = load_params(overrides={"backbone": "ple", "transfer": {"name": "ektm", "alpha": 0.1}, "gate.ecpm.k": 2})
    assert params_from_dict(json.loads(json.dumps(params_to_dict(p)))) == p
    for name in ("ml100k", "kuairand", "synthetic"):
        spec = load_spec(name)
        assert spec_from_dict(json.loads(json.dumps(spec_to_dict(spec)))) == spec


@pytest.mark.parametrize("key, value", [("train.batch_size", 0), ("train.max_epochs", 0), ("train.learning_rate", -0.1)])
def test_out_of_range_training_values_are_refused_before_any_step(key, value):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + " must be >="):
        load_params(overrides={"dataset": "ml100k", "date": "1998-03-01", key: value})


def test_a_bucket_url_as_a_data_path_is_refused_with_the_way_out():
    with pytest.raises(ConfigError, match=r"paths.data is a URL \(s3://bucket/lake\).*mount the bucket"):
        load_params(overrides={"dataset": "ml100k", "date": "1998-03-01", "paths.data": "s3://bucket/lake"})
