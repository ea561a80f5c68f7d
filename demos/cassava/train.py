"""Fine-tune the cassava classifier and write a model folder.

    python -m demos.cassava.train DATA_DIR OUT_DIR [--epochs 5 --batch-size 16]

DATA_DIR is the Kaggle layout (train.csv + train_images/) or one folder per
class. Starts from torchvision's ImageNet weights when they can be downloaded,
from scratch otherwise; validation figures go into the model card.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from demohub.kit import images
from demos.cassava import card, dataset, folder, labels, model
from demos.cassava.preprocess import Preprocessing, prepare


class Photos(Dataset):
    def __init__(self, samples: list[dataset.Sample], prep: Preprocessing, augment: bool):
        self.samples, self.prep, self.augment = samples, prep, augment

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        sample = self.samples[i]
        x = prepare(images.load_image(sample.path), self.prep)
        if self.augment and random.random() < 0.5:
            x = x[:, :, ::-1]
        if self.augment and random.random() < 0.5:
            x = x[:, ::-1, :]
        return torch.from_numpy(np.ascontiguousarray(x)), sample.label


def starting_network(architecture: str, pretrained: bool) -> tuple[nn.Module, str]:
    """ImageNet weights if they download, else random init (and say why)."""
    num_classes = len(labels.DISEASES)
    if pretrained and architecture == "resnext50_32x4d":
        try:
            return model.build(architecture, num_classes, pretrained=True), "ImageNet (torchvision IMAGENET1K_V2)"
        except Exception as exc:  # noqa: BLE001 - no network, proxy, corrupt cache...
            print(f"could not get ImageNet weights ({type(exc).__name__}: {exc}); training from scratch",
                  file=sys.stderr)
    return model.build(architecture, num_classes), "random initialisation"


def evaluate(net: nn.Module, loader: DataLoader) -> dict:
    net.eval()
    n_classes = len(labels.DISEASES)
    confusion = np.zeros((n_classes, n_classes), dtype=int)
    loss_sum, n = 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            logits = net(x)
            loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            n += len(y)
            for t, p in zip(y.tolist(), logits.argmax(1).tolist()):
                confusion[t, p] += 1
    metrics = {"validation images": n, "validation loss": round(loss_sum / max(n, 1), 4),
               "validation accuracy": round(float(np.trace(confusion)) / max(n, 1), 4)}
    for i, d in enumerate(labels.DISEASES):
        if confusion[i].sum():
            metrics[f"recall {d.code}"] = round(confusion[i, i] / confusion[i].sum(), 4)
    return metrics


def train(data_dir: Path, out_dir: Path, architecture: str = card.DEFAULT_ARCHITECTURE,
          prep: Preprocessing | None = None, epochs: int = 5, batch_size: int = 16, lr: float = 3e-4,
          val_fraction: float = 0.15, max_steps: int | None = None, pretrained: bool = True,
          seed: int = 0) -> dict:
    prep = prep or Preprocessing()
    random.seed(seed)
    torch.manual_seed(seed)
    train_set, val_set = dataset.split(dataset.find_samples(data_dir), val_fraction, seed)
    net, start = starting_network(architecture, pretrained)
    loader = DataLoader(Photos(train_set, prep, augment=True), batch_size=batch_size, shuffle=True)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    step, epochs_run, started = 0, 0, time.perf_counter()
    for epoch in range(epochs):
        epochs_run += 1
        net.train()
        for x, y in loader:
            loss = nn.functional.cross_entropy(net(x), y, label_smoothing=0.05)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step % 20 == 0:
                print(f"epoch {epoch + 1} step {step} loss {loss.item():.4f}", file=sys.stderr)
            if max_steps and step >= max_steps:
                break
        if max_steps and step >= max_steps:
            break
    metrics = {"training images": len(train_set), "steps": step, "epochs": epochs_run,
               "training time (s)": round(time.perf_counter() - started, 1), "starting weights": start}
    if val_set:
        metrics |= evaluate(net, DataLoader(Photos(val_set, prep, augment=False), batch_size=batch_size))
    config = card.make_config(trained=True, architecture=architecture, prep=prep)
    folder.save(net, out_dir, config, f"fine-tuned on `{Path(data_dir).name}` with demos.cassava.train.", metrics)
    return metrics


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--architecture", default=card.DEFAULT_ARCHITECTURE, choices=model.ARCHITECTURES)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--resize", type=int, default=256)
    p.add_argument("--crop-size", type=int, default=224)
    p.add_argument("--max-steps", type=int, default=None, help="stop early (smoke tests)")
    p.add_argument("--no-pretrained", action="store_true", help="skip the ImageNet download")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    metrics = train(args.data_dir, args.out_dir, args.architecture,
                    Preprocessing(resize=args.resize, crop_size=args.crop_size), args.epochs,
                    args.batch_size, args.lr, args.val_fraction, args.max_steps, not args.no_pretrained,
                    args.seed)
    for key, value in metrics.items():
        print(f"{key}: {value}")
    print(f"wrote {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
