"""VOC evaluation as YOLOX computes it, with the data's class names and numpy 2: perfect detections
score 1, a class without detections scores 0."""

import numpy as np
import pytest

from yolox_attn.data.shapes import CLASS_NAMES, make_shapes
from yolox_attn.evaluator import yolox_evaluation
from yolox_attn.voc import VOCDataset


@pytest.fixture(scope="module")
def test_set(tmp_path_factory):
    data = tmp_path_factory.mktemp("voc") / "shapes_voc"
    make_shapes(data, train=2, val=6, size=96, seed=4, data_format="voc")
    return VOCDataset(str(data), (("2007", "test"),), CLASS_NAMES, img_size=(96, 96))


def _ground_truth_as_detections(dataset, drop_class=None):
    """all_boxes[class][image]: the annotated boxes (x1, y1, x2, y2, score 1), as YOLOX's evaluator passes them."""
    all_boxes = [[np.empty((0, 5), np.float32) for _ in range(len(dataset))] for _ in CLASS_NAMES]
    for image in range(len(dataset)):
        boxes = dataset.load_anno(image)
        for cls in range(len(CLASS_NAMES)):
            if cls != drop_class:
                own = boxes[boxes[:, 4] == cls, :4]
                all_boxes[cls][image] = np.hstack([own, np.ones((len(own), 1))]).astype(np.float32)
    return all_boxes


def test_perfect_detections_score_one_and_a_missing_class_zero(test_set, tmp_path):
    present = {int(c) for i in range(len(test_set)) for c in test_set.load_anno(i)[:, 4]}
    assert present == set(range(len(CLASS_NAMES)))  # every class has ground truth here
    with yolox_evaluation():
        ap, ap50 = test_set.evaluate_detections(_ground_truth_as_detections(test_set), str(tmp_path / "a"))
        assert (ap, ap50) == pytest.approx((1.0, 1.0))
        ap, ap50 = test_set.evaluate_detections(_ground_truth_as_detections(test_set, drop_class=1), str(tmp_path / "b"))
    assert (ap, ap50) == pytest.approx((0.75, 0.75))  # the mean over 4 classes, one of them at 0


def test_yolox_writes_no_results_under_numpy_2_without_the_replacement(test_set, tmp_path):
    if np.lib.NumpyVersion(np.__version__) < "2.0.0":
        pytest.skip("YOLOX's `dets == []` only fails with numpy 2")
    with pytest.raises(ValueError, match="operands could not be broadcast together"):
        test_set.evaluate_detections(_ground_truth_as_detections(test_set), str(tmp_path))
