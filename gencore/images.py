"""Image sheets: grids of generated images written as PNG (local or gs:// paths)."""

import io

import numpy as np
from etils import epath
from PIL import Image


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[-1, 1] floats -> uint8 [0, 255], rounding to nearest."""
    return np.clip(np.rint((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def image_grid(images: np.ndarray, columns: int, padding: int = 2) -> np.ndarray:
    """Tile images [N, H, W, C] in [-1, 1] row by row into one uint8 [rows*H', columns*W', C]."""
    images = to_uint8(images)
    n, h, w, c = images.shape
    rows = -(-n // columns)
    grid = np.full((rows * (h + padding) + padding, columns * (w + padding) + padding, c), 255,
                   np.uint8)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top:top + h, left:left + w] = image
    return grid


def save_png(array: np.ndarray, path: epath.PathLike) -> None:
    """Write a uint8 [H, W, C] array as PNG (parents created)."""
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(buffer, "PNG")
    path.write_bytes(buffer.getvalue())


def save_image_grid(images: np.ndarray, path: epath.PathLike, columns: int) -> None:
    """Tile images [N, H, W, C] in [-1, 1] into a PNG sheet at ``path``."""
    save_png(image_grid(images, columns), path)
