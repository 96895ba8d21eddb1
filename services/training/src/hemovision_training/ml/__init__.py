"""HemoVision model training: data, model, training loop, calibration, evaluation, export.

Importing this package has no side effects (TensorFlow is imported by the submodules
that need it, not here).
"""
