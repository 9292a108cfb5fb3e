"""Sanity limits for sizes that a file or a command line declares. Each is checked before anything of that size is
allocated, so a few hostile bytes (a checkpoint, an ONNX file, a brush RLE) cannot ask for gigabytes of memory."""

MAX_IMGSZ = 8192  # pixels per side of a network input: 8192² × 3 floats is 0.8 GB per image
MAX_CLASSES = 100_000  # ImageNet-21k has 21,841; more is a corrupt or hostile file
MAX_IN_CHANNELS = 64  # image channels a network may take (gray, RGB, RGB-D, multispectral)
DEFAULT_IN_CHANNELS = 3  # what a model config or file that does not say takes (RGB)
MAX_IMAGE_PIXELS = 89_478_485  # PIL's decompression-bomb limit: an image (or a mask it declares) larger is refused
MAX_IMAGE_BYTES = 256 * 1024 * 1024  # one encoded image fetched for prediction (a 100-megapixel PNG is ~300 MB raw)
