"""`make demo`: train a small detector on the embedded shapes dataset, validate it, predict a few images, and
say where everything is. Runs offline on a laptop CPU in a few minutes."""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> int:
    from visionkit import Model

    print("visionkit demo: a YOLO detector on the embedded 'shapes' data (generated on first use, no network)\n")
    model = Model("yolo-n")
    model.train(data="shapes", imgsz=160, epochs=12, close_mosaic=3, batch=16)
    best = model.ckpt_path
    run = best.parent.parent
    metrics = model.val(plots=True)
    val_dir = model.save_dir
    print(f"\nvalidation mAP50-95 {metrics['mAP50-95']:.3f}, mAP50 {metrics['mAP50']:.3f} (pycocotools)")
    val_images = sorted(Path("datasets/shapes/images/val").glob("*.jpg"))[:4]
    model.predict([str(p) for p in val_images], save=True)
    predict_dir = model.save_dir
    print("\nwhere things are:")
    print(f"  trained weights       {best}")
    print(f"  training curves       {run / 'results.png'}")
    print(f"  first training batch  {run / 'train_batch0.jpg'} (augmentation with its boxes)")
    print(f"  PR curve, confusion   {val_dir / 'pr_curve.png'}, {val_dir / 'confusion_matrix.png'}")
    print(f"  predictions           {predict_dir / 'predictions.json'} (+ annotated images)")
    print(f"\nnext: visionkit detect predict model={best} source=YOUR_IMAGES_OR_VIDEO save")
    return 0


if __name__ == "__main__":
    sys.exit(main())
