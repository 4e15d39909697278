"""The product-photo check on all 10,000 Fashion-MNIST test images.

Each test image is rendered as a product photo (about 400 px, dark on white, coloured, with a
margin, JPEG), run back through `apparel.kinds.fashion_mnist.pipeline.photo_to_input`, and classified; the model's
accuracy is compared with its accuracy on the original images. Target: a drop of at most 2 points.

    .venv/bin/python benchmarks/photo_check.py --model-dir runs/reference
    .venv/bin/python benchmarks/photo_check.py --colours any --background 200 255   # dyed, tinted

Prints both accuracies and the drop; the last line is the report as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", help="run directory (default: the shipped `default`)")
    parser.add_argument("--data-dir", help="Fashion-MNIST IDX directory (default: Debian's)")
    parser.add_argument("--limit", type=int, help="check only the first N test images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the colours, margins and JPEG qualities")
    parser.add_argument("--colours", choices=("luma", "any"), default="luma",
                        help="'luma': the colour keeps each pixel's brightness (default); 'any': the garment is "
                        "dyed a random colour, black to off-white, that replaces it")
    parser.add_argument("--background", type=int, nargs=2, default=(255, 255), metavar=("LOW", "HIGH"),
                        help="random light tone per channel that tints the photo (default 255 255: white)")
    parser.add_argument("--out", help="also write the JSON report to this file")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    from apparel.artifacts import write_json
    from apparel.kinds.fashion_mnist.data import load_dataset
    from apparel.bench.photo_check import PhotoCheckConfig, photo_check
    from apparel.inference.prediction import Predictor, resolve_model_dir

    try:
        config = PhotoCheckConfig(seed=args.seed, colours=args.colours, background=tuple(args.background))
        model_dir = resolve_model_dir(args.model_dir)
        dataset = load_dataset(args.data_dir, scaled=False)
    except ValueError as error:
        print(f"photo_check: error: {error}", file=sys.stderr)
        return 2
    images, labels = dataset.x_test[: args.limit], dataset.y_test[: args.limit]
    predictor = Predictor.from_dir(model_dir)
    with tqdm(total=len(images), desc="photos", unit="img", file=sys.stderr, disable=None) as bar:
        report = photo_check(predictor, images, labels, config, progress=bar.update)
    result = {"model_dir": str(model_dir), **report.to_dict()}
    print(f"model {model_dir}: {report.images} test images; colours {config.colours}, background {config.background}")
    print(f"accuracy on the original images:      {report.original_accuracy:.4f}")
    print(f"accuracy on them as product photos:   {report.photo_accuracy:.4f} ({report.failed} refused)")
    print(f"drop: {report.drop_points:.2f} points (target ≤ 2); rendering + pipeline {1000 * report.seconds / max(1, report.images):.1f} ms/photo")
    if args.out:
        write_json(args.out, result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
