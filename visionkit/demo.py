"""`make demo`: train a classifier on the embedded shapes dataset, validate it, predict a few images, and say where
everything is. Runs offline on a laptop CPU in a few minutes."""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> int:
    from visionkit import Model

    print("visionkit demo: a classifier on the embedded 'shapes' data (generated on first use, no network)\n")
    model = Model("cifar-dilated")
    metrics = model.train(data="shapes", imgsz=64, epochs=12, batch=32, lr0=0.002)
    best = model.ckpt_path
    print(f"\nvalidation top-1 {metrics['top1']:.3f}, top-5 {metrics['top5']:.3f}")
    val_images = sorted(Path("datasets/shapes/images/val").glob("*.jpg"))[:4]
    model.predict([str(p) for p in val_images], save=True)
    predict_dir = model.save_dir
    print("\nwhere things are:")
    print(f"  trained weights     {best}")
    print(f"  training curves     {best.parent.parent / 'results.png'}")
    print(f"  confusion matrix    {best.parent.parent / 'confusion_matrix.png'}")
    print(f"  predictions         {predict_dir / 'predictions.json'} (+ annotated images)")
    print(f"\nnext: visionkit classify predict model={best} source=YOUR_IMAGES save")
    return 0


if __name__ == "__main__":
    sys.exit(main())
