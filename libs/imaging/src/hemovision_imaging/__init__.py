"""Image encoding on the request path (hemovision_imaging.png)."""

from hemovision_imaging.png import encode_png

__all__ = ["encode_png"]
