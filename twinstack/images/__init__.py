"""Local Debian base images (container and VM) built from Debian packages only."""

from __future__ import annotations

from twinstack.images.build import DEFAULT_CACHE, DEFAULT_PUBLISH, ImageSet, build_images
from twinstack.images.recipe import Recipe, debian_mirror

__all__ = [
    "DEFAULT_CACHE",
    "DEFAULT_PUBLISH",
    "ImageSet",
    "Recipe",
    "build_images",
    "debian_mirror",
]
