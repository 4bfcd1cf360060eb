"""Side-by-side image sheets: one column per method, one row per image, labelled."""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw

from pixdiff.data.images import resize, to_uint8


def image_sheet(columns: dict[str, torch.Tensor], row_names: list[str], path: str | Path,
                cell: int = 192, max_rows: int = 12) -> Path:
    """columns: name -> (N, 3, H, W) in [-1, 1], same N. Each image is resized to cell x cell."""
    titles, n = list(columns), min(len(row_names), max_rows)
    pad, label_h = 4, 16
    sheet = Image.new("RGB", (len(titles) * (cell + pad) + pad, label_h + n * (cell + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for j, title in enumerate(titles):
        draw.text((pad + j * (cell + pad), 2), title, fill="black")
        for i in range(n):
            im = resize(columns[title][i : i + 1].float(), (cell, cell))[0]
            tile = Image.fromarray(to_uint8(im).permute(1, 2, 0).numpy())
            sheet.paste(tile, (pad + j * (cell + pad), label_h + i * (cell + pad)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
