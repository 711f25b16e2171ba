"""Official-format checkpoints: fine-tuning loads, resume loading, and clear failures."""

import datetime

import numpy as np
import pytest
import torch
from conftest import EXPS_DIR, load_exp
from loguru import logger

from yolox_attn.checkpoint import load_checkpoint, load_pretrained, model_state


def _plain_yolox(depth, width, num_classes=80):
    """A plain YOLOX model as yolox.exp builds it: the source of an 'official' checkpoint."""
    from yolox.exp import Exp

    exp = Exp()
    exp.depth, exp.width, exp.num_classes = depth, width, num_classes
    return exp.get_model()


@pytest.fixture(scope="module")
def official_s(tmp_path_factory):
    """A checkpoint in the official yolox_s.pth format: {'model': state_dict of plain YOLOX-s}."""
    torch.manual_seed(0)
    model = _plain_yolox(0.33, 0.50).eval()
    path = tmp_path_factory.mktemp("ckpt") / "yolox_s.pth"
    torch.save({"model": model.state_dict()}, path)
    return path, model


def _capture_logs():
    messages = []
    handler = logger.add(lambda m: messages.append(str(m)), level="INFO")
    return messages, handler


@pytest.mark.parametrize("suffix", ["cam", "cca", "acmix"])
def test_official_checkpoint_loads_and_reproduces_baseline(official_s, suffix):
    path, baseline = official_s
    exp = load_exp(EXPS_DIR / f"yolox_s_{suffix}.py")
    model = exp.get_model().eval()
    messages, handler = _capture_logs()
    try:
        new_keys, skipped = load_pretrained(model, model_state(load_checkpoint(path)))
    finally:
        logger.remove(handler)
    assert new_keys == [k for k in model.state_dict() if ".attention." in k] and not skipped
    assert any("attention key(s) not in the checkpoint" in m for m in messages)
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        assert torch.equal(model(x), baseline(x))


def test_other_class_count_skips_only_class_layers(tmp_path):
    exp = load_exp(EXPS_DIR / "yolox_s_cca.py")
    exp.num_classes = 3
    model = exp.get_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    source = _plain_yolox(0.33, 0.50).state_dict()
    new_keys, skipped = load_pretrained(model, source)
    assert skipped and all(k.startswith("head.cls_preds.") for k in skipped)
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in skipped)
    assert all(torch.equal(after[k], source[k]) for k in after if k not in skipped and k not in new_keys)


def test_wrong_size_checkpoint_fails_naming_layers(tmp_path):
    path = tmp_path / "yolox_m.pth"
    torch.save({"model": _plain_yolox(0.67, 0.75).state_dict()}, path)
    model = load_exp(EXPS_DIR / "yolox_s_cam.py").get_model()
    with pytest.raises(ValueError, match=r"another shape.*backbone\.backbone\.stem"):
        load_pretrained(model, model_state(load_checkpoint(path)))


def test_non_yolox_or_missing_checkpoint_is_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint(tmp_path / "nope.pth")
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="no 'model' entry"):
        model_state(load_checkpoint(tmp_path / "other.pth"))


def test_resume_checkpoint_with_numpy_best_ap_loads_weights_only(tmp_path):
    """YOLOX stores COCOeval's numpy float as best_ap; torch.load(weights_only=True) rejects it."""
    path = tmp_path / "latest_ckpt.pth"
    torch.save({"model": {"w": torch.ones(2)}, "optimizer": {}, "start_epoch": 3,
                "best_ap": np.float64(0.25)}, path)
    ckpt = load_checkpoint(path)
    assert ckpt["best_ap"] == 0.25 and ckpt["start_epoch"] == 3
    # weights only still: an object that is neither a tensor nor a numpy scalar is refused, in one line
    other = tmp_path / "other_ckpt.pth"
    torch.save({"model": {"w": torch.ones(2)}, "saved_on": datetime.date(2024, 1, 1)}, other)
    with pytest.raises(ValueError, match=r"holding objects a weights-only load refuses\): .*datetime\.date") as err:
        load_checkpoint(other)
    assert "\n" not in str(err.value)


def _save_as_numpy1(path, obj):
    """``torch.save`` as under numpy 1.x, whose pickles name ``numpy.core.multiarray.scalar``."""
    import io
    import zipfile

    buf = io.BytesIO()
    torch.save(obj, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/data.pkl"):
                assert b"numpy._core.multiarray" in data, "numpy 2 spelling expected in the pickle"
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            dst.writestr(info, data)


def test_checkpoint_pickled_under_numpy1_loads_weights_only(tmp_path):
    path = tmp_path / "numpy1_ckpt.pth"
    _save_as_numpy1(path, {"model": {"w": torch.ones(2)}, "start_epoch": 3, "best_ap": np.float64(0.375)})
    ckpt = load_checkpoint(path)
    assert ckpt["best_ap"] == 0.375 and float(ckpt["best_ap"]) == 0.375
    assert torch.equal(ckpt["model"]["w"], torch.ones(2))
