"""Registry of backbones: name -> keras.applications constructor and how it
wants its pixels. Pure metadata at import time so that space validation does
not import TensorFlow; open to any other keras.applications model via
`register`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backbone:
    name: str
    #: attribute of `keras.applications`, or "module:name" for one of ours
    constructor: str
    #: how the model expects 0..255 RGB pixels: "caffe" (BGR, mean-subtracted),
    #: "tf" ([-1, 1]), "torch" ([0, 1] then ImageNet mean/std) or "none"
    #: (the application does it itself, e.g. EfficientNet).
    preprocess: str
    #: smallest input side the application accepts
    min_size: int = 32
    #: Keras adds `Rescaling(1/sqrt(IMAGENET_STDDEV))` after the stem
    #: Normalization only when built with weights="imagenet" (EfficientNet
    #: B0-B7): the hypermodel always builds weights=None and folds that factor
    #: into the Normalization's variance when it loads pretrained weights, so
    #: the architecture never depends on where the weights came from.
    imagenet_rescale: bool = False
    #: whether ImageNet weights exist (the validator refuses `weights:
    #: imagenet` for a backbone without them, before anything is built)
    imagenet: bool = True

    def build_fn(self):
        """The constructor, with keras.applications' signature."""
        import importlib

        if ":" in self.constructor:
            module, name = self.constructor.split(":")
            return getattr(importlib.import_module(module), name)
        import keras

        return getattr(keras.applications, self.constructor)


BACKBONES: dict[str, Backbone] = {}


def register(backbone: Backbone) -> Backbone:
    BACKBONES[backbone.name] = backbone
    return backbone


for _b in (
    Backbone("resnet50", "ResNet50", "caffe"),
    Backbone("resnet50v2", "ResNet50V2", "tf"),
    Backbone("resnet101", "ResNet101", "caffe"),
    Backbone("resnet101v2", "ResNet101V2", "tf"),
    Backbone("resnet152v2", "ResNet152V2", "tf"),
    Backbone("densenet121", "DenseNet121", "torch"),
    Backbone("densenet201", "DenseNet201", "torch"),
    Backbone("xception", "Xception", "tf", min_size=71),
    Backbone("mobilenetv2", "MobileNetV2", "tf"),
    Backbone("efficientnetb0", "EfficientNetB0", "none", imagenet_rescale=True),
    Backbone("efficientnetb6", "EfficientNetB6", "none", imagenet_rescale=True),
    Backbone("smallcnn", "tuner.model.smallcnn:SmallCNN", "tf", imagenet=False),
):
    register(_b)


def get(name: str) -> Backbone:
    from tuner.errors import SpaceError

    try:
        return BACKBONES[name]
    except KeyError:
        raise SpaceError(
            f"unknown backbone {name!r}; choose one of: {', '.join(sorted(BACKBONES))}"
        ) from None
