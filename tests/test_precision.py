"""train.precision: the policy chosen for each device, the loss scale kept
across a checkpoint, and the precisions a device cannot run refused in one
line."""

from __future__ import annotations

import pytest

from conftest import TINY_SPACE, run_cli, tiny_space
from tuner.errors import SpaceError, TunerError
from tuner.model.precision import Device, choose

V100, A100, P100, K80 = (Device("gpu", cc) for cc in ((7, 0), (8, 0), (6, 0), (3, 7)))
SAPPHIRE_RAPIDS = Device("cpu", cpu_flags=frozenset({"avx512f", "amx_bf16", "amx_tile"}))
PLAIN_CPU = Device("cpu", cpu_flags=frozenset({"avx2", "avx512f", "avx512_bf16"}))


@pytest.mark.parametrize("device, policy", [
    (Device("tpu"), "mixed_bfloat16"), (V100, "mixed_float16"), (A100, "mixed_float16"), (P100, "float32"),
    (SAPPHIRE_RAPIDS, "float32"), (PLAIN_CPU, "float32"), (Device("gpu"), "float32"),
])
def test_auto_chooses_by_device(device, policy):
    assert choose("auto", device)[0] == policy
    assert choose(None, device)[0] == policy  # the precision dimension left at its default


def test_asked_precisions_are_kept_where_the_device_runs_them():
    assert choose("float32", V100) == ("float32", "asked for in the space")
    assert choose("mixed_bfloat16", PLAIN_CPU)[0] == "mixed_bfloat16"  # emulated, slower, but runs
    assert choose("mixed_float16", P100)[0] == "mixed_float16"


@pytest.mark.parametrize("device", [PLAIN_CPU, Device("tpu"), K80])
def test_float16_where_the_device_has_none_is_one_line(device):
    with pytest.raises(TunerError, match="mixed_float16 needs an NVIDIA GPU with float16 arithmetic") as e:
        choose("mixed_float16", device)
    assert "\n" not in str(e.value)


def test_an_unknown_precision_names_the_key_and_what_is_allowed():
    from tuner.spaces import parse_space

    text = TINY_SPACE.format(epochs=1, steps=1, backbone="resnet50v2", extra="")
    with pytest.raises(SpaceError, match=r"train\.precision.*fp8.*choose one of auto, float32, mixed_float16"):
        parse_space(text.replace("jit_compile: false}", "jit_compile: false, precision: fp8}"))
    with pytest.raises(SpaceError, match=r"precision"):
        parse_space(text + "  precision: {value: half}\n")


def test_mixed_float16_on_this_cpu_ends_the_search_before_any_trial(flower_root, tmp_path):
    space = tiny_space(tmp_path, extra="  precision: {value: mixed_float16}\n")
    r = run_cli("search", "--plain", "--space", str(space), "--data", str(flower_root),
                "--project", str(tmp_path / "p"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stdout + r.stderr
    assert "mixed_float16 needs an NVIDIA GPU" in r.stderr and "use mixed_bfloat16, float32 or auto" in r.stderr
    assert not list((tmp_path / "p").glob("trial_*"))


def test_the_float16_loss_scale_is_saved_and_restored_with_the_optimizer(tmp_path):
    import keras
    import numpy as np

    from tuner.engine.checkpoint import TrialCheckpoint
    from tuner.model.hypermodel import build_model

    values = {"backbone": "smallcnn", "weights": "none", "image_size": 32, "optimizer": "adam",
              "learning_rate": 1e-3}
    model = build_model(values, jit_compile=False, num_classes=5, precision="mixed_float16")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)  # Keras wraps it by itself
    assert model.get_layer("flower").compute_dtype == "float32"  # the softmax stays float32
    assert keras.config.dtype_policy().name == "float32"  # the global policy is put back
    # The state of a run that trained a while: the scale backed off after overflows, its good-step
    # counter, the inner Adam's step count and slots (training on this CPU in float16 would take a minute).
    opt = model.optimizer
    opt.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    for v in opt.variables:
        v.assign(rng.uniform(1, 9, v.shape).astype(v.dtype) if v.shape else np.asarray(3, v.dtype))
    opt.dynamic_scale.assign(1024.0)
    ckpt = TrialCheckpoint(str(tmp_path))
    ckpt.save(model, 1, {"rows": []})
    ckpt.flush()

    again = build_model(values, jit_compile=False, num_classes=5, precision="mixed_float16")
    TrialCheckpoint(str(tmp_path)).restore(again)
    assert float(again.optimizer.dynamic_scale.numpy()) == 1024.0
    for a, b in zip(opt.variables, again.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# A mixed_bfloat16 trial and its resume on this CPU: test_search.py's SIGTERM test runs in that policy.
