"""The five classes, in the order of the Kaggle "Cassava Leaf Disease
Classification" labels (0-4) that the checkpoint and `train.csv` use."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Disease:
    code: str
    name: str

    @property
    def display(self) -> str:
        """What the UI shows: 'Cassava Mosaic Disease (CMD)', or just 'Healthy'."""
        return self.name if self.code == "Healthy" else f"{self.name} ({self.code})"


DISEASES: tuple[Disease, ...] = (
    Disease("CBB", "Cassava Bacterial Blight"),
    Disease("CBSD", "Cassava Brown Streak Disease"),
    Disease("CGM", "Cassava Green Mottle"),
    Disease("CMD", "Cassava Mosaic Disease"),
    Disease("Healthy", "Healthy"),
)


def to_config(diseases: tuple[Disease, ...] = DISEASES) -> list[dict[str, str]]:
    return [{"code": d.code, "name": d.name} for d in diseases]


def from_config(items: list[dict[str, str]]) -> tuple[Disease, ...]:
    return tuple(Disease(code=item["code"], name=item["name"]) for item in items)
