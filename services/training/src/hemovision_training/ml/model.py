"""Compact residual CNN for 8-class blood-cell classification.

The last convolutional activation is the layer named ``features``; Grad-CAM
(export.py) differentiates the top logit with respect to it.
"""
from __future__ import annotations

import keras
from keras import layers

FEATURES_LAYER = "features"
LOGITS_LAYER = "logits"


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, relu: bool = True):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                      kernel_initializer="he_normal", kernel_regularizer=None, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    if relu:
        x = layers.ReLU(name=f"{name}_relu")(x)
    return x


def _basic_block(x, filters: int, stride: int, name: str, out_name: str | None = None):
    shortcut = x
    y = _conv_bn(x, filters, 3, stride, f"{name}_a")
    y = _conv_bn(y, filters, 3, 1, f"{name}_b", relu=False)
    if stride != 1 or shortcut.shape[-1] != filters:
        if stride != 1:
            shortcut = layers.AveragePooling2D(stride, padding="same", name=f"{name}_pool")(shortcut)
        shortcut = _conv_bn(shortcut, filters, 1, 1, f"{name}_proj", relu=False)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=out_name or f"{name}_out")(y)


def build_model(input_size: int = 64, num_classes: int = 8, widths=(32, 64, 128, 256),
                blocks=(1, 2, 2, 1), stem_stride: int = 1, stem_width: int = 0, dropout: float = 0.1,
                name: str = "hemovision_resnet") -> keras.Model:
    """ResNet-style classifier: stem, then one stage per width (each after the first halves
    the resolution), global average pooling, dropout, linear logits (no softmax)."""
    inputs = keras.Input((input_size, input_size, 3), dtype="float32", name="image")
    if stem_width:
        # cheap full-resolution conv, then a stride-2 conv into the first stage
        x = _conv_bn(inputs, stem_width, 3, 1, "stem")
        x = _conv_bn(x, widths[0], 3, 2, "stem2")
    else:
        x = _conv_bn(inputs, widths[0], 3, stem_stride, "stem")
    n_stages = len(widths)
    for s, (w, n) in enumerate(zip(widths, blocks)):
        for b in range(n):
            stride = 2 if (s > 0 and b == 0) else 1
            last = s == n_stages - 1 and b == n - 1
            x = _basic_block(x, w, stride, f"s{s + 1}b{b + 1}", out_name=FEATURES_LAYER if last else None)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(num_classes, name=LOGITS_LAYER)(x)
    return keras.Model(inputs, logits, name=name)


def gradcam_model(model: keras.Model, layer_name: str = FEATURES_LAYER) -> keras.Model:
    """Same weights, two outputs: (the Grad-CAM target layer's feature map, logits)."""
    return keras.Model(model.inputs, [model.get_layer(layer_name).output, model.outputs[0]],
                       name=f"{model.name}_gradcam")
