"""Train the durian classifier from folder-per-class photos and write a model
folder the hub can serve.

    python -m demos.durian.train --data durian_photos --out models/durian

`durian_photos/train/<breed>/*.jpg` and `durian_photos/valid/<breed>/*.jpg`,
as the original durian app laid them out. Folder names become labels (known
aliases such as "musang_king" map to the canonical breed names). ImageNet
weights are used when they can be downloaded; otherwise training starts from
scratch and says so.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from demohub.kit import images

from demos.durian import folder, report, tfenv
from demos.durian.breeds import canonical
from demos.durian.model import DEFAULT_ARCHITECTURE, architecture, build, freeze_backbone
from demos.durian.preprocess import Preprocessing

import keras
import tensorflow as tf

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


@dataclass(frozen=True)
class Options:
    data: Path
    out: Path
    architecture: str = DEFAULT_ARCHITECTURE
    size: int = 224
    epochs: int = 20
    batch_size: int = 16
    patience: int = 3
    learning_rate: float = 1e-3
    imagenet: bool = True
    steps_per_epoch: int | None = None
    seed: int = 0


def class_folders(data: Path) -> list[str]:
    """The class folder names, which train/ and valid/ must share."""
    found = {}
    for split in ("train", "valid"):
        root = data / split
        if not root.is_dir():
            raise FileNotFoundError(f"{root} is missing; expected {data}/train/<breed>/ and {data}/valid/<breed>/")
        found[split] = sorted(p.name for p in root.iterdir() if p.is_dir())
    if found["train"] != found["valid"]:
        raise ValueError(f"train/ has classes {found['train']} but valid/ has {found['valid']}")
    if len(found["train"]) < 2:
        raise ValueError(f"{data}/train needs at least two class folders")
    return found["train"]


def labels_for(folders: list[str]) -> tuple[str, ...]:
    return tuple(canonical(name) or name for name in folders)


def augmentation(seed: int) -> keras.Sequential:
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
        keras.layers.RandomRotation(0.1, seed=seed),
        keras.layers.RandomZoom(0.15, seed=seed),
    ], name="augment")


def dataset(root: Path, folders: list[str], prep: Preprocessing, batch_size: int, *,
            shuffle: bool, seed: int) -> tf.data.Dataset:
    ds = keras.utils.image_dataset_from_directory(
        root, labels="inferred", label_mode="categorical", class_names=folders,
        image_size=(prep.height, prep.width), batch_size=batch_size, shuffle=shuffle, seed=seed,
        interpolation=prep.resample, verbose=False,
    )
    return ds.map(lambda x, y: (x * prep.scale + prep.offset, y))


def initial_model(opts: Options, prep: Preprocessing, n_classes: int) -> tuple[keras.Model, bool]:
    """(model, pretrained): ImageNet weights when downloadable, else from scratch."""
    arch = architecture(opts.architecture)
    if opts.imagenet and arch.imagenet:
        try:
            model = build(arch.name, prep.input_shape, n_classes, weights="imagenet", seed=opts.seed)
            freeze_backbone(model)
            return model, True
        except Exception as exc:  # noqa: BLE001 - no network, proxy, corrupt cache...
            print(f"ImageNet weights unavailable ({type(exc).__name__}: {exc}); training from scratch",
                  file=sys.stderr)
    return build(arch.name, prep.input_shape, n_classes, weights=None, seed=opts.seed), False


def validate(model: keras.Model, valid: tf.data.Dataset, labels: list[str]) -> report.Validation:
    true, probs = [], []
    for x, y in valid:
        probs.append(model(x, training=False).numpy())
        true.append(y.numpy())
    probs, true = np.concatenate(probs), np.concatenate(true)
    loss = float(np.mean(-np.log(np.clip((probs * true).sum(axis=1), 1e-7, 1.0))))
    matrix = report.confusion(true.argmax(axis=1), probs.argmax(axis=1), len(labels))
    return report.Validation(labels=list(labels), confusion=matrix, loss=loss)


def copy_examples(data: Path, folders: list[str], target: Path, per_class: int = 1) -> None:
    """A few validation photos, downscaled, for the demo's examples/."""
    for name in folders:
        photos = sorted(p for p in (data / "valid" / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for i, photo in enumerate(photos[:per_class]):
            images.load_image(photo, max_side=512).save(target / f"{name}_{i}.jpg", quality=88)


def train(opts: Options) -> Path:
    tfenv.configure()
    folders = class_folders(opts.data)
    labels = labels_for(folders)
    prep = Preprocessing(height=opts.size, width=opts.size)
    augment = augmentation(opts.seed)
    train_ds = dataset(opts.data / "train", folders, prep, opts.batch_size, shuffle=True, seed=opts.seed)
    train_ds = train_ds.map(lambda x, y: (augment(x, training=True), y)).repeat().prefetch(2)
    valid_ds = dataset(opts.data / "valid", folders, prep, opts.batch_size, shuffle=False, seed=opts.seed)
    n_train = sum(1 for f in folders for p in (opts.data / "train" / f).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    steps = opts.steps_per_epoch or max(1, -(-n_train // opts.batch_size))

    model, pretrained = initial_model(opts, prep, len(labels))
    model.compile(optimizer=keras.optimizers.Adam(opts.learning_rate), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=opts.patience, restore_best_weights=True)
    history = model.fit(train_ds, validation_data=valid_ds, epochs=opts.epochs, steps_per_epoch=steps,
                        callbacks=[stop], shuffle=False, verbose=2)  # the dataset shuffles itself
    epochs_run = len(history.history["loss"])

    figures = validate(model, valid_ds, list(labels))
    arch = architecture(opts.architecture)
    config = folder.make_config(arch.name, arch.last_conv_layer, trained=True, labels=labels, prep=prep,
                                training={"epochs": epochs_run, "imagenet": pretrained,
                                          "val_accuracy": round(figures.accuracy, 4),
                                          "val_loss": round(figures.loss, 4)})
    body = report.markdown(figures, epochs_run, pretrained, stopped_early=stop.stopped_epoch > 0)
    out = folder.write(opts.out, model, config, body)
    copy_examples(opts.data, folders, out / "examples")
    print(f"wrote {out}: validation accuracy {figures.accuracy:.1%}", file=sys.stderr)
    return out


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="folder with train/ and valid/")
    p.add_argument("--out", type=Path, required=True, help="model folder to write")
    p.add_argument("--architecture", default=DEFAULT_ARCHITECTURE, help="xception, densenet121 or tiny_cnn")
    p.add_argument("--size", type=int, default=224, help="input side in pixels")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--patience", type=int, default=3, help="early-stopping patience in epochs")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--no-imagenet", dest="imagenet", action="store_false", help="train from scratch")
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    return Options(**vars(p.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
