"""An invisible watermark in keyframes: the DWT-DCT scheme of the ``invisible-watermark`` package, done with
PyWavelets and OpenCV (that package imports torch when it loads and needs the GUI ``opencv-python``, which would
replace this project's headless OpenCV).

The luma is taken three Haar levels down (the LL3 band, one sample per 8x8 pixels); the band is cut into 4x4
blocks, and one coefficient of each block's DCT is quantised onto one of two interleaved lattices, which carries
one bit (quantisation-index modulation). Every bit of the payload goes into some 15 blocks scattered over the
picture by a fixed permutation, and reading sums their soft votes, so a caption plate or a dark corner that
clips costs no bit.

Why these settings (measured on a rendered 1080x1920 keyframe, see tests/media/test_watermark.py):
- LL3, not LL1: its blocks span 32x32 pixels, low frequencies that JPEG keeps and a 3x downscale does not blur
  away; at 43 dB, LL1 loses half the payload's bits to a 360x640 downscale, which LL3 comes through whole.
- the (1, 1) DCT coefficient: a diagonal pattern, the orientation the eye is least sensitive to; the block mean
  (DC) would move the brightness of whole 32-pixel tiles, which shows in smooth gradients.
- QIM_STEP: 44 dB PSNR against the original. The payload reads back whole after PNG, JPEG down to quality 30,
  a downscale to 360x640 (then JPEG quality 60) or 234x416, and an H.264 encode of the 1080x1920 frame at CRF 28;
  half the step (50 dB) loses bits after the 360x640 downscale and JPEG. Not survived: a crop or shift that
  moves the 32-pixel grid, or H.264 at a small rung (360x640 at CRF 28).

The payload (``watermark_payload``) is 16 bytes: the magic ``MDRM``, the first 8 bytes of a SHA-256 of the
episode id, and a CRC-32 over both, so a picture without a watermark (or a damaged one) does not read as one.
"""

from __future__ import annotations

import functools
import hashlib
import struct
import zlib

import cv2
import numpy as np
import pywt

WATERMARK_MAGIC = b"MDRM"
DIGEST_BYTES = 8
PAYLOAD_BYTES = len(WATERMARK_MAGIC) + DIGEST_BYTES + 4  # magic, episode digest, CRC-32

_WAVELET = "haar"
_LEVELS = 3
_BLOCK = 4
_COEFFICIENT = (1, 1)  # row, column of the 4x4 DCT coefficient that carries the bit
QIM_STEP = 96.0  # lattice spacing in LL3-DCT units (a 1-level change over an 8x8 cell is 8 units)
_CELL = _BLOCK * 2**_LEVELS  # pixels per block side: 32
_MIN_VOTES_PER_BIT = 4  # fewer blocks per bit than this and JPEG alone flips bits
_PERMUTATION_SEED = 0x4D44524D  # "MDRM": fixed, so the reader finds the bits where the writer put them
_BT601 = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # the luma JPEG and the encoders' I420 use
_DIGEST_DOMAIN = b"microdrama-watermark\0"


class WatermarkError(ValueError):
    """An image or payload the watermark cannot be written into or read from; the message says why."""


@functools.lru_cache(maxsize=1)
def _coefficient_basis() -> np.ndarray:
    """The 4x4 pixel pattern of the carrier coefficient under OpenCV's orthonormal DCT-II: adding ``d`` times
    this pattern to a block changes that coefficient by ``d`` and no other."""
    basis_vectors = cv2.dct(np.eye(_BLOCK), flags=cv2.DCT_ROWS).T  # row k: the k-th DCT-II basis vector
    row, column = _COEFFICIENT
    return np.outer(basis_vectors[row], basis_vectors[column]).astype(np.float32)


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise WatermarkError(f"expected an RGB image (h, w, 3) uint8, got {image.shape} {image.dtype}")


def _bit_of_block(n_blocks: int, n_bits: int) -> np.ndarray:
    if n_blocks < n_bits * _MIN_VOTES_PER_BIT:
        raise WatermarkError(
            f"the image holds {n_blocks} watermark blocks of {_CELL}x{_CELL} px; {n_bits} bits need at least "
            f"{n_bits * _MIN_VOTES_PER_BIT}: use a larger image or a shorter payload")
    permutation = np.random.default_rng(_PERMUTATION_SEED).permutation(n_blocks)
    return permutation % n_bits


def _luma_band(image: np.ndarray) -> tuple[np.ndarray, list, np.ndarray]:
    """(luma of the whole-block region, its Haar decomposition, the carrier coefficient of every block)."""
    height, width = (image.shape[0] // _CELL) * _CELL, (image.shape[1] // _CELL) * _CELL
    if not height or not width:
        raise WatermarkError(f"image {image.shape[1]}x{image.shape[0]} is smaller than one {_CELL}x{_CELL} block")
    luma = image[:height, :width].astype(np.float32) @ _BT601
    bands = pywt.wavedec2(luma, _WAVELET, level=_LEVELS)
    low = bands[0]
    rows, columns = low.shape[0] // _BLOCK, low.shape[1] // _BLOCK
    blocks = low.reshape(rows, _BLOCK, columns, _BLOCK)
    carriers = np.einsum("amcn,mn->ac", blocks, _coefficient_basis())
    return luma, bands, carriers


def _bits(payload: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(payload, dtype=np.uint8))


def embed_watermark(image: np.ndarray, payload: bytes) -> np.ndarray:
    """A copy of the RGB ``image`` carrying ``payload`` invisibly in its luma; colour (chroma) is unchanged.
    The strip right and below the last whole 32-pixel block is left as it was."""
    _check_image(image)
    if not payload:
        raise WatermarkError("the watermark payload is empty")
    luma, bands, carriers = _luma_band(image)
    bits = _bits(payload)[_bit_of_block(carriers.size, len(payload) * 8)].reshape(carriers.shape)
    # Move each carrier to the nearest point of its bit's lattice: (k + 1/4) * step for 0, (k + 3/4) * step for 1.
    targets = (np.floor(carriers / QIM_STEP) + 0.25 + 0.5 * bits) * QIM_STEP
    low = bands[0]
    rows, columns = carriers.shape
    change = (targets - carriers).astype(np.float32)[:, None, :, None] * _coefficient_basis()[None, :, None, :]
    bands[0] = low + change.reshape(rows * _BLOCK, columns * _BLOCK)
    marked_luma = pywt.waverec2(bands, _WAVELET)
    # Adding the same amount to R, G and B moves the luma by exactly that amount and leaves the chroma alone.
    marked = image.astype(np.float32)
    marked[: luma.shape[0], : luma.shape[1]] += (marked_luma - luma)[..., None]
    return np.clip(np.rint(marked), 0, 255).astype(np.uint8)


def read_watermark(image: np.ndarray, payload_bytes: int = PAYLOAD_BYTES,
                   embedded_size: tuple[int, int] | None = None) -> bytes:
    """The ``payload_bytes`` an image's watermark carries, by majority of soft votes per bit. A picture without
    a watermark reads as noise (check it with ``episode_digest_in``). ``embedded_size`` (width, height) is the
    size the watermark was written at: a resized copy is scaled back to it first, so the blocks line up."""
    _check_image(image)
    if payload_bytes <= 0:
        raise WatermarkError(f"payload_bytes must be positive, got {payload_bytes}")
    if embedded_size is not None and (image.shape[1], image.shape[0]) != tuple(embedded_size):
        image = cv2.resize(image, tuple(embedded_size), interpolation=cv2.INTER_CUBIC)
    _, _, carriers = _luma_band(image)
    bit_of_block = _bit_of_block(carriers.size, payload_bytes * 8)
    # +1 where a carrier sits on the 0-lattice, -1 on the 1-lattice, in between for carriers knocked off both.
    votes = np.sin(2 * np.pi * carriers.ravel() / QIM_STEP)
    tally = np.bincount(bit_of_block, weights=votes, minlength=payload_bytes * 8)
    return np.packbits((tally < 0).astype(np.uint8)).tobytes()


def episode_digest(episode_id: str) -> bytes:
    """The 8 bytes that stand for an episode in its watermark."""
    if not episode_id:
        raise WatermarkError("episode id is empty")
    return hashlib.sha256(_DIGEST_DOMAIN + episode_id.encode("utf-8")).digest()[:DIGEST_BYTES]


def watermark_payload(episode_id: str) -> bytes:
    """The 16-byte payload for an episode's keyframes: magic, episode digest, CRC-32 of both."""
    body = WATERMARK_MAGIC + episode_digest(episode_id)
    return body + struct.pack(">I", zlib.crc32(body))


def episode_digest_in(image: np.ndarray, embedded_size: tuple[int, int] | None = None) -> bytes | None:
    """The episode digest an image's watermark carries, or None when it carries no intact one."""
    payload = read_watermark(image, PAYLOAD_BYTES, embedded_size)
    body, checksum = payload[:-4], payload[-4:]
    if not body.startswith(WATERMARK_MAGIC) or struct.pack(">I", zlib.crc32(body)) != checksum:
        return None
    return body[len(WATERMARK_MAGIC):]


def verify_watermark(image: np.ndarray, episode_id: str, embedded_size: tuple[int, int] | None = None) -> bool:
    """Whether ``image`` carries the watermark of ``episode_id``."""
    return episode_digest_in(image, embedded_size) == episode_digest(episode_id)
