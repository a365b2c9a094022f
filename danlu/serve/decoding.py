"""What an image will cost to decode, known from its header before a single pixel is decoded.

A 38-byte lossless WebP can declare 6300x6300 pixels, and a 265 KB float TIFF unpacks to more than a
gigabyte on its way to 8 bits: the request size says nothing about the decode's cost. So the server opens
each image lazily (PIL reads only the header), estimates the memory its decode will hold, refuses what
is over budget with a 422 naming the input (or a 413 for the request), decodes the rest in a small pool
of threads off the event loop, and hands the freed memory back to the kernel after a big decode.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from danlu.serve.inputs import RequestError

# Formats a served model takes (what training reads, by IMAGE_EXTENSIONS; phone MPOs open as JPEG); PIL's
# other plugins (EPS runs Ghostscript, PSD, ICNS, ...) are never tried on a client's bytes.
SERVED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF", "PPM")
ACCEPTED = "JPEG, PNG, GIF, BMP, WebP, TIFF or PPM"

# Peak bytes per pixel that ``decode_image`` holds for an image of each mode (PIL's pixels, plus the
# copies of the conversion to 8-bit RGB or L). Measured on 2000x2000 images with Pillow 13 (the VmHWM
# rise while one decodes, rounded up): L or 1 bit 2-5, RGB 4-5, CMYK 9-10, 16-bit gray 12, anything with
# alpha 16 (composited on white in RGBA), 32-bit int or float 29 (scaled through float64 arrays).
PEAK_BYTES_PER_PIXEL = {"1": 6, "L": 6, "P": 8, "RGB": 6, "I;16": 13, "I;16L": 13, "I;16B": 13, "I;16N": 13,
                        "I": 30, "F": 30, "RGBA": 17, "RGBa": 17, "LA": 17, "La": 17, "PA": 17}
OTHER_MODES = 10  # CMYK, YCbCr, LAB, HSV
TRIM_AFTER = 16 << 20  # after a request that decoded more than this, give freed memory back to the kernel
MIB = 1 << 20


def decode_cost(mode: str, size: tuple[int, int], transparent: bool = False) -> int:
    """Estimated peak bytes of decoding an image of this mode and (width, height) to 8-bit RGB or L."""
    per_pixel = PEAK_BYTES_PER_PIXEL.get(mode, OTHER_MODES)
    if mode == "P" and transparent:  # a palette with a transparent entry goes through RGBA
        per_pixel = PEAK_BYTES_PER_PIXEL["RGBA"]
    return size[0] * size[1] * per_pixel


@dataclass
class CheckedImages:
    """A request's images after the header check: the client's bytes replaced by the PIL images opened to
    read their headers (so each is parsed once: opening twice took ~5 % of the event loop's time at 32
    clients), and the estimated bytes decoding them will hold. ``close()`` when done."""

    items: list[Any]
    cost: int

    def close(self) -> None:
        """Close the images and drop them here, in the decoding thread: a WebP keeps its decoded frame in a
        buffer that outlives ``Image.close``; freed later on the event loop, it stalled /healthz for seconds
        and was still resident when the memory was handed back."""
        for item in self.items:
            if hasattr(item, "close") and not isinstance(item, bytes | bytearray):
                item.close()
        self.items = []


def check_images(items: Sequence[Any], names: Sequence[Any] | None, target: tuple[int, int],
                 max_image: int, max_request: int, max_pixels: int | None = None) -> CheckedImages:
    """Refuse images over budget from their headers, before any is decoded.

    ``target`` is the model's (height, width): JPEGs are set to decode at a reduced scale (``draft``) and
    costed at it, so a 24-megapixel phone photo costs what its 1/8-scale decode costs. Paths and arrays
    come from the process's own user, not a client, and are passed through.
    """
    from PIL import Image, UnidentifiedImageError

    from danlu.data.imagefolder import reduce_jpeg_decode

    Image.init()  # registers every plugin once (preinit leaves out TIFF and WebP); a no-op after
    checked = CheckedImages(list(items), 0)
    try:
        for i, item in enumerate(items):
            if not isinstance(item, bytes | bytearray):
                continue
            where = f"input {i}" + (f" ({names[i]})" if names is not None and str(names[i]) != f"input {i}" else "")
            try:
                img = Image.open(io.BytesIO(item), formats=SERVED_FORMATS)
                checked.items[i] = img
                if getattr(img, "n_frames", 1) > 1:
                    img.seek(0)
                described = f"{img.width}x{img.height} {img.mode}"
                reduce_jpeg_decode(img, target)
            except Image.DecompressionBombError as e:  # PIL's own pixel cap, hit while reading the header
                raise RequestError(f"{where}: the image declares too many pixels ({e})",
                                   f"send a smaller image: the model sees {target[1]}x{target[0]} pixels") from None
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError,
                    TypeError, struct.error, ZeroDivisionError, MemoryError) as e:  # what PIL's header readers raise
                reason = "" if isinstance(e, UnidentifiedImageError) else f" ({type(e).__name__}: {e})"
                raise RequestError(f"{where}: not a readable image{reason[:300]}", f"send a {ACCEPTED} image") from None
            cost = decode_cost(img.mode, img.size, "transparency" in img.info)
            if cost > max_image:
                raise RequestError(f"{where}: decoding this {described} image would take ~{cost / MIB:,.0f} MiB, "
                                   f"more than the {max_image / MIB:g} MiB allowed per image (--max-image-mb)",
                                   f"send a smaller image: the model sees {target[1]}x{target[0]} pixels")
            if max_pixels is not None and img.width * img.height > max_pixels:
                raise RequestError(f"{where}: the image is {img.width}x{img.height} pixels, more than {max_pixels:,}",
                                   "send a smaller image")
            checked.cost += cost
            if checked.cost > max_request:
                raise RequestError(f"decoding the images of this request would take more than the "
                                   f"{max_request / MIB:g} MiB allowed per request (--max-request-image-mb; "
                                   f"over it at {where})", "send fewer or smaller images per request", status=413)
    except BaseException:
        checked.close()
        raise
    return checked


def give_back_memory(decoded: int) -> None:
    """After a big decode, return the freed heap to the kernel: the server keeps freed blocks for speed
    (``danlu.runtime.keep_freed_memory``), which left a 300 KB PNG's decode resident as +565 MB."""
    if decoded > TRIM_AFTER:
        from danlu.runtime import trim_freed_memory

        trim_freed_memory()
