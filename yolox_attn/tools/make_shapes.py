"""Write the generated shapes dataset (``yolox_attn.data.shapes``) for the shapes exps.

    python -m yolox_attn.tools.make_shapes --out datasets/shapes [--train 512 --val 128 --size 320 --seed 0]
    python -m yolox_attn.tools.make_shapes --out datasets/shapes_voc --format voc

The generator lives in ``yolox_attn.data.shapes``; its public names are importable from here too,
as before that move.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

from ..data.shapes import (  # noqa: F401  (re-exported: this module's names before the move)
    CLASS_NAMES,
    DEFAULT_SEED,
    DEFAULT_SIZE,
    DEFAULT_TRAIN,
    DEFAULT_VAL,
    FORMATS,
    MAX_IMAGE_SIZE,
    MAX_IMAGES,
    MIN_IMAGE_SIZE,
    Shape,
    format_summary,
    make_shapes,
    patch_bounds,
    rasterize,
    render_image,
    sample_shape,
)


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface; the rules here match make_shapes' checks."""
    p = argparse.ArgumentParser(
        prog="python -m yolox_attn.tools.make_shapes",
        description=(
            f"Write a synthetic shapes dataset ({', '.join(CLASS_NAMES)}) for YOLOX. COCO layout (default): "
            "OUT/annotations/instances_{train,val}2017.json and OUT/{train,val}2017/*.jpg. VOC layout "
            "(--format voc; OUT is then a VOC exp's data_dir): OUT/VOC2007/{JPEGImages,Annotations}/<id>.{jpg,xml} "
            "and OUT/VOC2007/ImageSets/Main/{trainval,test}.txt holding the train and val splits. Both layouts "
            "hold the same images and boxes; identical arguments give identical files (for the same numpy and "
            "OpenCV versions)."
        ),
        epilog=(
            f"Rules: --train and --val are integers in [1, {MAX_IMAGES}]; --size is an integer in "
            f"[{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}] (square images); --seed is an integer >= 0. "
            "OUT may be missing (parents are created) or an empty folder; a non-empty OUT is refused "
            "unless --force, which replaces it only after the new dataset is complete. Data are built "
            "in a hidden temporary sibling of OUT and renamed at the end; nothing is left on failure."
        ),
    )
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument("--train", type=int, default=DEFAULT_TRAIN, help=f"train images (default {DEFAULT_TRAIN})")
    p.add_argument("--val", type=int, default=DEFAULT_VAL, help=f"val images (default {DEFAULT_VAL})")
    p.add_argument("--size", type=int, default=DEFAULT_SIZE, help=f"image side in px (default {DEFAULT_SIZE})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    p.add_argument("--format", dest="data_format", choices=FORMATS, default="coco",
                   help="dataset layout (default coco)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: argument errors exit with status 2, I/O errors with 1."""
    parser = build_parser()
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        summary = make_shapes(args.out, train=args.train, val=args.val, size=args.size,
                              seed=args.seed, force=args.force, data_format=args.data_format)
    except ValueError as exc:
        parser.error(str(exc))
    except OSError as exc:
        print(f"make_shapes: error: {exc}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    print(f"  done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
