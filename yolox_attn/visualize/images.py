"""The image files a demo reads and the pictures it writes (OpenCV only: the ONNX demo, which
runs without torch, shares them with the PyTorch demo)."""

import os
from typing import List

import cv2
import numpy as np

__all__ = ["IMAGE_EXT", "get_image_list", "image_files", "picture_path", "write_picture"]

IMAGE_EXT = (".jpg", ".jpeg", ".webp", ".bmp", ".png")


def get_image_list(path: str) -> List[str]:
    """Image files under ``path`` (recursive, extension case-insensitive), sorted."""
    found = []
    for root, _, names in os.walk(path):
        found += [os.path.join(root, n) for n in names if os.path.splitext(n)[1].lower() in IMAGE_EXT]
    return sorted(found)


def image_files(path: str) -> List[str]:
    """``path`` itself, or the images in the folder ``path``; a one-line ``SystemExit`` when it does
    not exist or holds none."""
    if not os.path.exists(path):
        raise SystemExit(f"--path {path!r} does not exist")
    files = get_image_list(path) if os.path.isdir(path) else [path]
    if not files:
        raise SystemExit(f"no images ({', '.join(IMAGE_EXT)}) under {path!r}")
    return files


def picture_path(path: str, root: str, out_dir: str) -> str:
    """Where the picture of image ``path`` goes: in ``out_dir`` at its path relative to ``root`` when
    ``root`` is a folder (equal names in two sub-folders do not collide), else by its name; the
    folder is made."""
    rel = os.path.relpath(path, root) if os.path.isdir(root) else os.path.basename(path)
    target = os.path.join(out_dir, rel)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    return target


def write_picture(path: str, picture: np.ndarray) -> None:
    """``cv2.imwrite``, which returns False instead of raising, as a one-line ``SystemExit`` on failure."""
    if not cv2.imwrite(path, picture):
        raise SystemExit(f"could not write {path}: cv2.imwrite failed (is the folder writable and the "
                         "extension an image format such as .jpg or .png?)")
