"""HemoVision training service (ML pipeline in :mod:`hemovision_training.ml`)."""
