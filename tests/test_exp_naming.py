"""``opts`` that change the attention name the experiment (and so its output folder) after it."""

import pytest
from conftest import EXPS_DIR, load_exp


@pytest.mark.parametrize("exp_file, opts, name", [
    ("example/yolox_nano_cam_shapes.py", ["attention", "cca"], "yolox_nano_cca_shapes"),
    ("yolox_s_cam.py", ["attention", "acmix", "max_epoch", "2"], "yolox_s_acmix"),
    ("yolox_s_cca.py", ["attention", "NonLocal"], "yolox_s_nonlocal"),
    ("yolox_s_cam.py", ["attention", "none"], "yolox_s_none"),
    ("yolox_s_cam.py", ["attention", "ca"], "yolox_s_cam"),  # "ca" is "cam": same attention, same name
    ("yolox_s_cam.py", ["max_epoch", "2"], "yolox_s_cam"),  # other opts keep YOLOX's behaviour
])
def test_opts_attention_renames_the_experiment(exp_file, opts, name):
    exp = load_exp(EXPS_DIR / exp_file)
    exp.merge(opts)
    assert exp.exp_name == name


def test_renamed_run_matches_the_exp_file_of_that_attention():
    # yolox_nano_cam_shapes + "attention cca" logs where yolox_nano_cca_shapes.py would.
    exp = load_exp(EXPS_DIR / "example" / "yolox_nano_cam_shapes.py")
    exp.merge(["attention", "cca"])
    assert exp.exp_name == load_exp(EXPS_DIR / "example" / "yolox_nano_cca_shapes.py").exp_name


def test_name_without_the_attention_and_bad_names_stay():
    exp = load_exp(EXPS_DIR / "yolox_s_cam.py")
    exp.exp_name = "my_run"
    exp.merge(["attention", "cca"])
    assert exp.exp_name == "my_run"
    exp = load_exp(EXPS_DIR / "yolox_s_cam.py")
    exp.merge(["attention", "nosuch"])
    assert exp.exp_name == "yolox_s_cam"
    with pytest.raises(ValueError, match="unknown attention 'nosuch'"):
        exp.get_model()
