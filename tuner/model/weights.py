"""Where a backbone's ImageNet ("notop") weights file comes from.

Keras' applications fetch their ImageNet file while they build, so the only
way Keras offers to get it is a second model built with weights="imagenet"
(a whole ResNet50 built once more per trial, and one per backbone at a
search's start only to see whether the file can be had). The file's name
and address are plain data in each application's module: this module reads
them from there and asks `keras.utils.get_file`, which takes the copy in
`~/.keras/models` (or `$KERAS_HOME/models`) when there is one and
downloads it otherwise. The hypermodel then builds each backbone once, with
weights=None, and loads that file into it.

No file hash is checked: a file a user copied into the cache by hand (the
way offline machines get one) is taken as it is, as Keras' own cache lookup
does when no hash is given.
"""

from __future__ import annotations

import importlib

from tuner.model.backbones import Backbone

_APPS = "keras.src.applications."
#: sizes Keras has MobileNetV2 ImageNet files for; another size loads 224's
_MOBILENET_ROWS = (96, 128, 160, 192, 224)


def imagenet_source(spec: Backbone, size: int) -> tuple[str, str]:
    """(file name, address) of the ImageNet notop file Keras would load for
    `spec` at `size` px."""
    ctor = spec.constructor
    if ctor.startswith("ResNet"):
        module = importlib.import_module(_APPS + "resnet")
        name = f"{spec.name}_weights_tf_dim_ordering_tf_kernels_notop.h5"
        return name, f"{module.BASE_WEIGHTS_PATH}{name}"
    if ctor.startswith("DenseNet"):
        module = importlib.import_module(_APPS + "densenet")
        url = getattr(module, f"{ctor.upper()}_WEIGHT_PATH_NO_TOP")
        return url.rsplit("/", 1)[1], url
    if ctor == "Xception":
        url = importlib.import_module(_APPS + "xception").WEIGHTS_PATH_NO_TOP
        return url.rsplit("/", 1)[1], url
    if ctor == "MobileNetV2":
        module = importlib.import_module(_APPS + "mobilenet_v2")
        rows = size if size in _MOBILENET_ROWS else 224
        name = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"
        return name, module.BASE_WEIGHT_PATH + name
    if ctor.startswith("EfficientNet"):
        module = importlib.import_module(_APPS + "efficientnet")
        name = f"{ctor.lower()}_notop.h5"
        return name, module.BASE_WEIGHTS_PATH + name
    raise KeyError(f"no ImageNet file known for {spec.name} ({ctor})")


def imagenet_file(spec: Backbone, size: int) -> str:
    """The local path of `spec`'s ImageNet notop file, downloaded when it is
    not in Keras' cache yet (raises what the download raises)."""
    from keras.src.utils import file_utils  # what the applications themselves call

    name, origin = imagenet_source(spec, size)
    return file_utils.get_file(name, origin, cache_subdir="models")
