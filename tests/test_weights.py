"""ImageNet weights from Keras' cache: each backbone built once per trial,
and the check at a search's start builds no model at all. Run in a child
process whose KERAS_HOME is the test's folder (Keras reads it at import),
with the "ImageNet" file written there by the test in Keras' legacy format
(the real files cannot be downloaded here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO

CHILD = textwrap.dedent("""
    import json, os, sys
    import h5py, keras, numpy as np
    from keras.src.legacy.saving import legacy_h5_format
    from tuner.model import backbones
    from tuner.model.hypermodel import build_backbone, check_weights_available
    from tuner.model.weights import imagenet_source
    from tuner.spaces import load_space

    spec = backbones.get("resnet50v2")
    name, origin = imagenet_source(spec, 32)
    source = keras.applications.ResNet50V2(include_top=False, weights=None, input_shape=(32, 32, 3))
    rng = np.random.default_rng(0)
    source.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in source.get_weights()])
    os.makedirs(os.path.join(os.environ["KERAS_HOME"], "models"))
    with h5py.File(os.path.join(os.environ["KERAS_HOME"], "models", name), "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)

    builds = []
    real = keras.applications.ResNet50V2
    def counted(*a, **kw):  # the real constructor, counted
        builds.append(kw.get("weights"))
        return real(*a, **kw)
    keras.applications.ResNet50V2 = counted

    check_weights_available(load_space(sys.argv[1]))
    checked = list(builds)
    backbone = build_backbone(spec, "imagenet", 32)
    same = all(np.array_equal(a, b) for a, b in zip(backbone.get_weights(), source.get_weights()))
    print(json.dumps({"file": name, "origin": origin, "check": checked, "build": builds[len(checked):],
                      "same": same}))
""")


def test_imagenet_weights_come_from_keras_cache_with_one_build_and_none_to_check(tmp_path):
    space = tmp_path / "s.yaml"
    space.write_text("name: s\nmethod: random\nrun_cap: 1\nparameters:\n  backbone: {value: resnet50v2}\n"
                     "  weights: {value: imagenet}\n  image_size: {value: 32}\n")
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "keras"), "PYTHONPATH": str(REPO),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-c", CHILD, str(space)], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["file"] == "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert out["origin"].startswith("https://storage.googleapis.com/tensorflow/keras-applications/resnet/")
    assert out["check"] == []  # the file was found without building a model
    assert out["build"] == [None]  # one build, weights=None, then the file loaded into it
    assert out["same"]


def test_every_shipped_backbone_has_a_known_imagenet_file():
    from tuner.model import backbones
    from tuner.model.weights import imagenet_source

    for name, spec in backbones.BACKBONES.items():
        if not spec.imagenet:
            with pytest.raises(KeyError):
                imagenet_source(spec, 192)
            continue
        file, origin = imagenet_source(spec, 192)
        assert origin.endswith("/" + file) and file.endswith(".h5"), name
    assert imagenet_source(backbones.get("mobilenetv2"), 100)[0].endswith("_224_no_top.h5")
