"""The invisible keyframe watermark, decoded back from a rendered 1080x1920 keyframe after what a published still
goes through: PNG, JPEG, downscaling and the mezzanine's H.264 encode."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from microdrama_assets.media.manifest import EpisodeManifest
from microdrama_assets.media.render import render_keyframe
from microdrama_assets.media.storyboard import plan_keyframes
from microdrama_assets.media.video_io import (
    MezzanineSettings,
    read_rgb_frames,
    write_mezzanine,
)
from microdrama_assets.media.watermark import (
    PAYLOAD_BYTES,
    WATERMARK_MAGIC,
    WatermarkError,
    embed_watermark,
    episode_digest,
    episode_digest_in,
    read_watermark,
    verify_watermark,
    watermark_payload,
)

from .cast import CHARACTERS

EPISODE = "locket-ep-01"
SIZE = (1080, 1920)


@pytest.fixture(scope="module")
def keyframe() -> np.ndarray:
    manifest = EpisodeManifest.model_validate({
        "episode_id": EPISODE, "title": "Watermark", "logline": "A test.", "seed": 1, "characters": CHARACTERS,
        "shots": [{"id": "s01", "beat": "turn", "duration_s": 3.0, "camera": "static",
                   "action": "Nora turns to Omar.", "mood": "tense", "framing": "two_shot", "location": "cafe",
                   "time_of_day": "night", "characters": ["nora", "omar"], "dialogue": [], "keyframes": 1,
                   "seed": 11}],
    })
    shot = manifest.shots[0]
    return render_keyframe(manifest, shot, plan_keyframes(shot, manifest)[0]).image


@pytest.fixture(scope="module")
def marked(keyframe) -> np.ndarray:
    return embed_watermark(keyframe, watermark_payload(EPISODE))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_payload_is_magic_episode_digest_and_crc():
    payload = watermark_payload(EPISODE)
    assert len(payload) == PAYLOAD_BYTES == 16
    assert payload[:4] == WATERMARK_MAGIC and payload[4:12] == episode_digest(EPISODE)
    assert payload[12:] == struct.pack(">I", zlib.crc32(payload[:12]))
    assert watermark_payload("another-episode")[4:12] != payload[4:12]
    with pytest.raises(WatermarkError, match="episode id is empty"):
        watermark_payload("")


def test_watermark_is_invisible_and_leaves_colour_and_border_alone(keyframe, marked):
    assert marked.shape == keyframe.shape and marked.dtype == np.uint8
    assert _psnr(keyframe, marked) >= 42.0  # measured 44.0 dB
    # Only luma moves: R, G and B move together, so R-G and B-G stay put (but for rounding and clipping).
    chroma_change = np.abs(np.diff(marked.astype(int), axis=2) - np.diff(keyframe.astype(int), axis=2))
    assert np.mean(chroma_change <= 1) > 0.995
    # 1080 is not a multiple of the 32-px block: the last 24 columns are outside every block and untouched.
    assert np.array_equal(marked[:, 1056:], keyframe[:, 1056:])


def test_decodes_back_after_png_and_jpeg(marked):
    payload = watermark_payload(EPISODE)
    png = cv2.imdecode(cv2.imencode(".png", marked)[1], cv2.IMREAD_UNCHANGED)
    assert read_watermark(png) == payload
    for quality in (85, 70):
        assert verify_watermark(_jpeg(marked, quality), EPISODE), f"JPEG quality {quality}"
    assert not verify_watermark(marked, "another-episode")


def test_decodes_back_after_a_downscale_to_360x640(marked):
    small = cv2.resize(marked, (360, 640), interpolation=cv2.INTER_AREA)
    assert episode_digest_in(small, embedded_size=SIZE) == episode_digest(EPISODE)
    assert verify_watermark(_jpeg(small, 85), EPISODE, embedded_size=SIZE)
    with pytest.raises(WatermarkError, match="use a larger image"):
        read_watermark(small)  # at its own size it holds too few blocks: the reader must scale it back


def test_decodes_back_from_the_mezzanine_h264_encode(marked, tmp_path):
    write_mezzanine(tmp_path / "still.mp4", [marked], *SIZE, MezzanineSettings())
    decoded = next(read_rgb_frames(tmp_path / "still.mp4"))
    assert verify_watermark(decoded, EPISODE)


def test_a_clean_keyframe_carries_no_watermark(keyframe):
    assert read_watermark(keyframe)[:4] != WATERMARK_MAGIC
    assert episode_digest_in(keyframe) is None
    assert not verify_watermark(keyframe, EPISODE)


def test_bad_input_is_refused(keyframe):
    with pytest.raises(WatermarkError, match="expected an RGB image"):
        embed_watermark(keyframe[..., 0], watermark_payload(EPISODE))
    with pytest.raises(WatermarkError, match="payload is empty"):
        embed_watermark(keyframe, b"")
    with pytest.raises(WatermarkError, match="smaller than one 32x32 block"):
        read_watermark(keyframe[:20, :20])
