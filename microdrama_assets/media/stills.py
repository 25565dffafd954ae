"""Still images for people: keyframe contact sheets and frame grabs from a finished episode."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import av
import cv2
import numpy as np


def contact_sheet(images: Sequence[np.ndarray], tile_width: int = 180, columns: int = 6, gap: int = 6) -> np.ndarray:
    """Thumbnails in a grid on a dark background."""
    if not images:
        raise ValueError("a contact sheet needs at least one image")
    tile_height = round(tile_width * images[0].shape[0] / images[0].shape[1])
    rows = -(-len(images) // columns)
    cols = min(columns, len(images))
    sheet = np.full((rows * (tile_height + gap) + gap, cols * (tile_width + gap) + gap, 3), 18, np.uint8)
    for index, image in enumerate(images):
        row, col = divmod(index, columns)
        y, x = gap + row * (tile_height + gap), gap + col * (tile_width + gap)
        sheet[y : y + tile_height, x : x + tile_width] = cv2.resize(image, (tile_width, tile_height), interpolation=cv2.INTER_AREA)
    return sheet


def grab_frames(video: Path, frame_indices: Sequence[int]) -> list[np.ndarray]:
    """RGB frames at the given indices, decoded in one pass."""
    wanted = sorted(set(frame_indices))
    grabbed: dict[int, np.ndarray] = {}
    with av.open(str(video)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                grabbed[index] = frame.to_ndarray(format="rgb24")
            if index >= wanted[-1]:
                break
    missing = [i for i in wanted if i not in grabbed]
    if missing:
        raise ValueError(f"{video} has no frames {missing}")
    return [grabbed[i] for i in frame_indices]
