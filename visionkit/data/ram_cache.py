"""``cache=ram`` (or ``cache=true``): decoded images kept in memory. Before filling it, say how much memory it
takes and refuse when that would not fit, rather than let the machine swap or the kernel kill the run."""

from __future__ import annotations

import os

from visionkit.errors import DataError

HEADROOM = 0.8  # at most this share of the available memory; the model, the loaders and the OS need the rest


def available_bytes() -> int | None:
    """Memory the system can hand out now (Linux: MemAvailable), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    if hasattr(os, "sysconf"):
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            return None
    return None


def check_ram_cache(images: int, nbytes: int, what: str, verbose: bool = True) -> None:
    """Print the cache's size; a DataError when ``nbytes`` is more than HEADROOM of the available memory."""
    avail = available_bytes()
    gib = 2**30
    if avail is not None and nbytes > HEADROOM * avail:
        raise DataError(
            f"cache=ram for {images} {what} images needs about {nbytes / gib:.1f} GB, but only "
            f"{avail / gib:.1f} GB of memory is available; train with cache=false (images are then read "
            f"from disk each epoch), a smaller imgsz, or on a machine with more memory"
        )
    if verbose:
        free = f" of {avail / gib:.1f} GB available" if avail is not None else ""
        print(f"caching {images} {what} images in RAM: about {nbytes / gib:.2f} GB{free}")


def resized_bytes(shapes: list[tuple[int, int]], imgsz: int, bytes_per_pixel: int) -> int:
    """Bytes of images of (width, height) ``shapes`` once their long side is resized to ``imgsz``."""
    total = 0
    for w, h in shapes:
        r = imgsz / max(w, h)
        total += max(1, round(w * r)) * max(1, round(h * r)) * bytes_per_pixel
    return total
