import pytest

from core.config import ConfigError, load_params
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
