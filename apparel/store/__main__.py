"""``python -m apparel.store``: link the garment photos, teach the ImageNet side thumbnails, build the store model
from a garment run, or make its artefact.

    python -m apparel.store link ../shared/datasets runs/store-photos [--worn-on-white] [--other-apparel]
    python -m apparel.store distil runs/store-photos --datasets ../shared/datasets --out runs/store-imagenet
    python -m apparel.store build runs/store-garments --datasets ../shared/datasets --out runs/store \
        --imagenet-top runs/store-imagenet/imagenet_top.weights.h5
    python -m apparel.store artefact runs/store --datasets ../shared/datasets
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apparel.store", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    link = verbs.add_parser("link", help="link clothing-dataset-small and -extra's photos as train/ and validation/")
    link.add_argument("datasets", help="the folder holding clothing-dataset-small and clothing-dataset-extra")
    link.add_argument("out", help="where to make train/<class>/ and validation/<class>/")
    link.add_argument("--worn-on-white", action="store_true",
                      help="also each worn crop with the street made white (tried, not the shipped recipe: "
                           "docs/store-model.md); give a fresh OUT")
    link.add_argument("--other-apparel", action="store_true",
                      help="the worn things the head has no class for as one class, other-apparel (tried, not "
                           "the shipped recipe); give a fresh OUT")
    build = verbs.add_parser("build", help="the store model from a garment run, calibrated on validation photos")
    build.add_argument("garment_run", help="an `apparel train --images` run on the linked photos")
    build.add_argument("--datasets", required=True, help="the folder of the data sets (validation photos)")
    build.add_argument("--out", required=True, help="the run directory to write")
    build.add_argument("--imagenet-top", help="the ImageNet side's top blocks taught to read thumbnails (distil's "
                                              "imagenet_top.weights.h5; left out: as pretrained)")
    distil = verbs.add_parser("distil", help="teach the ImageNet side to read small thumbnails as it reads the "
                                             "photo itself (imagenet_top.weights.h5, for build --imagenet-top)")
    distil.add_argument("photos_dir", help="the linked garment photos (link's OUT): their train/ side")
    distil.add_argument("--datasets", required=True, help="the folder of the data sets (Co-Parsing's training side)")
    distil.add_argument("--out", required=True, help="the folder to write the weights and distil.json into")
    distil.add_argument("--epochs", type=int, default=3, help="passes over the photos (default 3)")
    artefact = verbs.add_parser("artefact", help="the store model's partly int8 LiteRT artefact (model.tflite), "
                                "calibrated on training-side photos")
    artefact.add_argument("run", help="the store model's run directory (its model.tflite is replaced)")
    artefact.add_argument("--datasets", required=True, help="the folder of the data sets (training-side photos)")
    args = parser.parse_args(argv)
    try:
        if args.verb == "link":
            from apparel.store.training_set import link_training_set

            result = link_training_set(args.datasets, args.out, worn_on_white=args.worn_on_white,
                                       other_apparel=args.other_apparel)
        elif args.verb == "build":
            from apparel.store.build import build_store_run

            result = build_store_run(args.garment_run, args.datasets, args.out, args.imagenet_top, show_progress=True)
        elif args.verb == "distil":
            from apparel.store.distil import DistilConfig, distil_imagenet_top

            result = distil_imagenet_top(args.photos_dir, args.datasets, args.out, DistilConfig(epochs=args.epochs),
                                         show_progress=True)
        else:
            from apparel.contract import metadata_path
            from apparel.store.artefact import write_store_artefact

            path = write_store_artefact(args.run, args.datasets)
            result = {"artefact": str(path), "metadata": str(metadata_path(path))}
    except ValueError as error:
        parser.error(str(error))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
