"""Compact residual CNN for 8-class blood-cell classification.

The last convolutional activation is the layer named ``features``; Grad-CAM
(export.py) differentiates the top logit with respect to it.
"""
from __future__ import annotations

import keras
from keras import layers

FEATURES_LAYER = "features"
LOGITS_LAYER = "logits"


NORMS = ("batch", "group")


def _norm(x, norm: str, name: str):
    """BatchNorm (v1), or GroupNorm: per-image statistics, so nothing learned from one lab's
    batches is baked into serving (BN statistics collapse under stain/scanner shift)."""
    if norm == "group":
        channels = int(x.shape[-1])
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return layers.GroupNormalization(groups=groups, epsilon=1e-5, name=f"{name}_gn")(x)
    if norm != "batch":
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, relu: bool = True, norm: str = "batch"):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                      kernel_initializer="he_normal", kernel_regularizer=None, name=f"{name}_conv")(x)
    x = _norm(x, norm, name)
    if relu:
        x = layers.ReLU(name=f"{name}_relu")(x)
    return x


def _basic_block(x, filters: int, stride: int, name: str, out_name: str | None = None, norm: str = "batch"):
    shortcut = x
    y = _conv_bn(x, filters, 3, stride, f"{name}_a", norm=norm)
    y = _conv_bn(y, filters, 3, 1, f"{name}_b", relu=False, norm=norm)
    if stride != 1 or shortcut.shape[-1] != filters:
        if stride != 1:
            shortcut = layers.AveragePooling2D(stride, padding="same", name=f"{name}_pool")(shortcut)
        shortcut = _conv_bn(shortcut, filters, 1, 1, f"{name}_proj", relu=False, norm=norm)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=out_name or f"{name}_out")(y)


def build_model(input_size: int = 64, num_classes: int = 8, widths=(32, 64, 128, 256),
                blocks=(1, 2, 2, 1), stem_stride: int = 1, stem_width: int = 0, dropout: float = 0.1,
                name: str = "hemovision_resnet", norm: str = "batch") -> keras.Model:
    """ResNet-style classifier: stem, then one stage per width (each after the first halves
    the resolution), global average pooling, dropout, linear logits (no softmax)."""
    inputs = keras.Input((input_size, input_size, 3), dtype="float32", name="image")
    logits = _resnet_body(inputs, num_classes, widths, blocks, stem_stride, stem_width, dropout, prefix="",
                          norm=norm)
    return keras.Model(inputs, logits, name=name)


def _resnet_body(inputs, num_classes, widths, blocks, stem_stride, stem_width, dropout, prefix: str,
                 norm: str = "batch"):
    p = prefix
    if stem_width:
        # cheap full-resolution conv, then a stride-2 conv into the first stage
        x = _conv_bn(inputs, stem_width, 3, 1, f"{p}stem", norm=norm)
        x = _conv_bn(x, widths[0], 3, 2, f"{p}stem2", norm=norm)
    else:
        x = _conv_bn(inputs, widths[0], 3, stem_stride, f"{p}stem", norm=norm)
    n_stages = len(widths)
    for s, (w, n) in enumerate(zip(widths, blocks)):
        for b in range(n):
            stride = 2 if (s > 0 and b == 0) else 1
            last = s == n_stages - 1 and b == n - 1
            x = _basic_block(x, w, stride, f"{p}s{s + 1}b{b + 1}",
                             out_name=f"{p}{FEATURES_LAYER}" if last else None, norm=norm)
    x = layers.GlobalAveragePooling2D(name=f"{p}gap")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{p}dropout")(x)
    return layers.Dense(num_classes, name=f"{p}{LOGITS_LAYER}")(x)


def member_prefix(i: int) -> str:
    return f"m{i}_"


def build_ensemble(member_configs: list[dict], input_size: int = 64, num_classes: int = 8,
                   name: str = "hemovision_ensemble") -> keras.Model:
    """Several ResNet-style members on one input, one flat graph; ``logits`` = mean of the members'
    logits. Member i's layers are named ``m{i}_<layer>`` (so Grad-CAM can reach every member's
    feature map). ``member_configs``: build_model keyword arguments (widths, blocks, stem_width, ...)."""
    inputs = keras.Input((input_size, input_size, 3), dtype="float32", name="image")
    outs = []
    for i, mc in enumerate(member_configs):
        outs.append(_resnet_body(inputs, num_classes, tuple(mc["widths"]), tuple(mc["blocks"]),
                                 mc.get("stem_stride", 1), mc.get("stem_width", 0), mc.get("dropout", 0.1),
                                 prefix=member_prefix(i), norm=mc.get("norm", "batch")))
    logits = layers.Average(name=LOGITS_LAYER)(outs) if len(outs) > 1 else outs[0]
    return keras.Model(inputs, logits, name=name)


def load_member_weights(ensemble: keras.Model, i: int, member: keras.Model) -> None:
    """Copy a trained single model's weights into ensemble member ``i`` (layers matched by name)."""
    p = member_prefix(i)
    for layer in member.layers:
        if layer.weights:
            ensemble.get_layer(p + layer.name).set_weights(layer.get_weights())


def gradcam_model(model: keras.Model, layer_name: str | list[str] = FEATURES_LAYER) -> keras.Model:
    """Same weights, outputs (feature map of each Grad-CAM layer..., logits). ``layer_name`` is one
    name, a comma-separated list or a list (an ensemble explains with every member's map)."""
    names = layer_name.split(",") if isinstance(layer_name, str) else list(layer_name)
    return keras.Model(model.inputs, [model.get_layer(n.strip()).output for n in names] + [model.outputs[0]],
                       name=f"{model.name}_gradcam")
