"""Model-side image preparation: windowed 8-bit views, CT/MR montages, classifier tensors.

``ingest`` decodes pixels to :class:`core.records.Image` / ``Volume`` with a
display window; here they become what each model family expects.  The pixel
logic is pure numpy; resizing for the classifier uses MONAI transforms so that
interpolation matches what MONAI-trained models saw.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from core.errors import ModelError
from core.records import Image, Volume


def apply_window(pixels: npt.NDArray[np.generic], window: tuple[float, float] | None) -> npt.NDArray[np.float32]:
    """Grey levels in [0, 1] through the DICOM linear VOI function (PS3.3 C.11.2.1.2.1).

    Without a window, the 0.5th-99.5th percentile range is used so that a few
    hot pixels (burned-in text, collimator edges) do not flatten the image.
    """
    x = np.asarray(pixels, dtype=np.float32)
    if window is None:
        lo, hi = (float(v) for v in np.percentile(x, [0.5, 99.5]))
        if hi - lo < 1e-6 * max(1.0, abs(lo)):  # flat image: everything mid-grey-or-below, no overflow
            hi = lo + 1.0
        return np.asarray(np.clip((x - lo) / (hi - lo), 0.0, 1.0), dtype=np.float32)
    center, width = window
    if width < 1:
        raise ModelError(f"window width must be >= 1, got {width}")
    if width == 1:  # PS3.3: a width of 1 is a threshold at the centre
        return (x >= center - 0.5).astype(np.float32)
    y = ((x - (center - 0.5)) / (width - 1) + 0.5).astype(np.float32)
    return np.clip(y, 0.0, 1.0)


def to_rgb_uint8(image: Image) -> npt.NDArray[np.uint8]:
    """An H x W x 3 uint8 view as a viewer would display it (MONOCHROME1 inverted)."""
    px = image.pixels
    if px.ndim == 3:
        rgb = px[..., :3]
        if rgb.dtype != np.uint8:
            rgb = (apply_window(rgb, image.window) * 255.0 + 0.5).astype(np.uint8)
        return np.ascontiguousarray(rgb)
    grey = apply_window(px, image.window)
    if image.photometric == "MONOCHROME1":
        grey = 1.0 - grey
    g8 = (grey * 255.0 + 0.5).astype(np.uint8)
    return np.repeat(g8[:, :, None], 3, axis=2)


def key_slice_indices(n_slices: int, count: int) -> list[int]:
    """``count`` slice indices spread over the central 80 % of a stack (ends are mostly air or table)."""
    if n_slices < 1 or count < 1:
        raise ModelError(f"need at least one slice and one key slice, got {n_slices} and {count}")
    if n_slices <= count:
        return list(range(n_slices))
    lo, hi = 0.1 * (n_slices - 1), 0.9 * (n_slices - 1)
    return sorted({round(lo + (hi - lo) * i / (count - 1)) for i in range(count)}) if count > 1 else [n_slices // 2]


def montage(volume: Volume, *, count: int = 9, window: tuple[float, float] | None = None) -> npt.NDArray[np.uint8]:
    """Key axial slices of a CT/MR volume tiled in a square grid (H x W x 3 uint8).

    VLMs accept few images per prompt; one montage shows the whole extent of
    a volume at the cost of resolution.
    """
    idx = key_slice_indices(volume.voxels.shape[0], count)
    win = window or volume.window
    tiles = [apply_window(volume.voxels[i], win) for i in idx]
    side = int(np.ceil(np.sqrt(len(tiles))))
    h, w = tiles[0].shape
    grid = np.zeros((side * h, side * w), dtype=np.float32)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, side)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = tile
    g8 = (grid * 255.0 + 0.5).astype(np.uint8)
    return np.repeat(g8[:, :, None], 3, axis=2)


def xrv_input(image: Image, size: int = 224) -> npt.NDArray[np.float32]:
    """A 1 x size x size float32 array scaled to [-1024, 1024], as torchxrayvision models expect.

    Steps follow ``xrv.datasets.normalize`` + ``XRayCenterCrop`` + ``XRayResizer``:
    display-window to [0, 1], map to [-1024, 1024], crop the centred square,
    resize (MONAI ``Resize``, area interpolation).
    """
    import torch
    from monai.transforms.croppad.array import CenterSpatialCrop
    from monai.transforms.spatial.array import Resize

    px = image.pixels
    grey = apply_window(px if px.ndim == 2 else px[..., :3].mean(axis=2), image.window)
    if image.photometric == "MONOCHROME1":
        grey = 1.0 - grey
    x = (2.0 * grey - 1.0) * 1024.0
    side = min(x.shape)
    chw = torch.from_numpy(np.ascontiguousarray(x[None, :, :], dtype=np.float32))
    cropped = CenterSpatialCrop(roi_size=(side, side))(chw)
    resized = Resize(spatial_size=(size, size), mode="area")(cropped)
    return np.asarray(resized.detach().cpu().numpy() if hasattr(resized, "detach") else resized, dtype=np.float32)
