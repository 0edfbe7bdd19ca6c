"""Images: decoded and re-encoded, so what is kept and sent is pixels only.

The orientation in the EXIF data is applied to the pixels and then every piece of metadata (EXIF
with its GPS position, XMP, comments, bytes appended after the image) is left behind, because
only the pixels are written out. The size is checked from the header before any pixel is decoded.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from chat.attachments.errors import AttachmentRefused

THUMBNAIL_SIDE = 320


@dataclass(frozen=True)
class ProcessedImage:
    data: bytes
    content_type: str
    extension: str
    width: int
    height: int
    thumbnail: bytes


def _encode(image: Image.Image, *, has_alpha: bool) -> tuple[bytes, str, str]:
    out = io.BytesIO()
    if has_alpha:
        image.save(out, format="PNG", optimize=True)
        return out.getvalue(), "image/png", "png"
    image.save(out, format="JPEG", quality=85, optimize=True)
    return out.getvalue(), "image/jpeg", "jpg"


def image_process(
    path: Path, *, expected_format: str, max_side: int, max_pixels: int
) -> ProcessedImage:
    """Decode the image at `path` (its first frame), apply its orientation, scale it to at most
    `max_side` on its longest side and re-encode it without metadata."""
    # Pillow's own guard refuses at `open` without saying the size; this one reads the size from
    # the header (`open` decodes no pixels) and refuses before `load` decodes any.
    Image.MAX_IMAGE_PIXELS = None
    width = height = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path, formats=[expected_format]) as opened:
                width, height = opened.size
                if width * height > max_pixels:
                    raise Image.DecompressionBombError
                opened.seek(0)  # an animation's first frame
                # JPEG can decode at a fraction of its size directly: a 12-megapixel photo
                # scaled for a 2048-pixel side decodes in a quarter of the memory and time.
                opened.draft("RGB", (max_side, max_side))
                opened.load()
                image = ImageOps.exif_transpose(opened)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            size = f"{width:,} × {height:,} pixels is " if width else ""
            raise AttachmentRefused(
                f"This image is too large to open: {size}more than the "
                f"{max_pixels / 1e6:g} megapixels allowed."
            ) from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise AttachmentRefused(
                "This image could not be read: it may be damaged or not really an image."
            ) from exc
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    image = image.convert("RGBA" if has_alpha else "RGB")
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    data, content_type, extension = _encode(image, has_alpha=has_alpha)
    small = image.copy()
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    thumbnail, _type, _ext = _encode(small, has_alpha=has_alpha)
    return ProcessedImage(
        data=data,
        content_type=content_type,
        extension=extension,
        width=image.width,
        height=image.height,
        thumbnail=thumbnail,
    )
