"""A small two-shot HLS package built by the real encoder and packager, shared by the packaging tests."""

import cv2
import numpy as np
import pytest

from microdrama_assets.media.hls import (LADDER, PRESETS, Rung, assemble_video_rendition, encode_shot_renditions,
                                         ladder_variants, package_audio, video_codecs, write_master_playlist)
from microdrama_assets.media.video_io import MezzanineSettings, decode_frames, write_mezzanine

SMALL = (Rung("360p", 360, 640, 550, 700), LADDER[-1])  # a plain rung and the real cellular rung
# Every codec this FFmpeg build can encode: the packaging tests cover H.264, HEVC and AV1 ladders together.
SMALL_VARIANTS = ladder_variants(video_codecs(["h264", "hevc", "av1"]), SMALL)


@pytest.fixture(scope="session")
def two_shot_package(tmp_path_factory):
    root = tmp_path_factory.mktemp("hls")
    rng = np.random.default_rng(3)
    base = cv2.GaussianBlur(rng.integers(0, 255, (640, 360, 3), dtype=np.uint8), (0, 0), 4)
    shots = [("s01", 0, 75), ("s02", 75, 50)]
    renditions = {}
    for shot_id, start, frames in shots:
        write_mezzanine(root / f"{shot_id}.mp4", (np.roll(base, 3 * (start + i), axis=1) for i in range(frames)),
                        360, 640, MezzanineSettings())
        renditions[shot_id] = encode_shot_renditions(
            decode_frames(root / f"{shot_id}.mp4"), frames, start, root / shot_id, PRESETS["draft"], SMALL_VARIANTS)
    package = root / "package"
    variants = [assemble_video_rendition([(s, root / s / v.key, renditions[s][v.key]) for s, _, _ in shots], package, v)
                for v in SMALL_VARIANTS]
    t = np.arange(int(48000 * 125 / 30)) / 48000
    tone = np.stack([0.3 * np.sin(2 * np.pi * 330 * t)] * 2, 1).astype(np.float32)
    write_master_playlist(package, variants, package_audio(tone, 48000, package, 2.0, SMALL), "en", False)
    return root, package, renditions


