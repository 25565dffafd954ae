"""Shared by the SFX, music-bed and episode-audio tests: a small manifest and sound files written with PyAV."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from conftest import build_manifest
from microdrama_assets.media.manifest import Beat, EpisodeManifest

ACTION = "Maya hears the door creak open as her phone buzzes on the counter."


def manifest_with(actions: list[str], seed: int = 1, location: str = "cafe", beats: list[Beat] | None = None
                  ) -> EpisodeManifest:
    """The shared test manifest (4 s a shot; beats hook, turn, cliffhanger unless given) with these actions."""
    data = build_manifest(shot_seconds=(4.0,) * len(actions)).model_dump(mode="json")
    for index, (shot, action) in enumerate(zip(data["shots"], actions)):
        shot.update(action=action, location=location, beat=beats[index].value if beats else shot["beat"])
    return EpisodeManifest.model_validate({**data, "seed": seed})


def write_tone(path: Path, hz: float, seconds_long: float, rate: int = 44100, codec: str = "pcm_s16le") -> None:
    """A mono sine at ``rate`` in any codec PyAV encodes (the container follows the file name)."""
    t = np.arange(int(rate * seconds_long)) / rate
    samples = (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)[None, :]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        for start in range(0, samples.shape[1], 1152):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start : start + 1152]), format="flt",
                                               layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def write_video_without_audio(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for index in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
