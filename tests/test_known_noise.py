"""The known noise of YOLOX's tools (yolox_attn.known_noise) is silenced, and nothing else."""

import os
import sys
import warnings

from yolox_attn.known_noise import silence_known_noise, without_stderr

AMP_MESSAGE = ("`torch.cuda.amp.GradScaler(args...)` is deprecated. Please use `torch.amp.GradScaler('cuda', "
               "args...)` instead.")


def test_yolox_amp_deprecations_are_silenced_and_nothing_else():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_known_noise()
        for message, category, module in [
            (AMP_MESSAGE, FutureWarning, "yolox.core.trainer"),  # silenced
            (AMP_MESSAGE.replace("GradScaler", "autocast"), FutureWarning, "yolox.models.yolo_head"),  # silenced
            (AMP_MESSAGE, FutureWarning, "my_trainer"),  # our code or a user's: kept
            ("something else is deprecated", FutureWarning, "yolox.core.trainer"),  # kept
            (AMP_MESSAGE, UserWarning, "yolox.core.trainer"),  # kept
        ]:
            warnings.warn_explicit(message, category, f"{module}.py", 1, module=module)
    kept = [(str(w.message), w.category, w.filename) for w in caught]
    assert kept == [(AMP_MESSAGE, FutureWarning, "my_trainer.py"),
                    ("something else is deprecated", FutureWarning, "yolox.core.trainer.py"),
                    (AMP_MESSAGE, UserWarning, "yolox.core.trainer.py")]


def test_without_stderr_drops_a_shell_complaint_and_keeps_the_result(capfd):
    def count_devices():  # what YOLOX's get_num_devices does
        return len(os.popen("no-such-tool-17 -L").read().strip().split("\n"))

    assert count_devices() == 1
    assert "no-such-tool-17: not found" in capfd.readouterr().err
    assert without_stderr(count_devices)() == 1
    assert capfd.readouterr().err == ""
    print("stderr is back", file=sys.stderr)
    assert capfd.readouterr().err == "stderr is back\n"
