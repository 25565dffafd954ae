from pathlib import Path

import pytest

from microdrama_assets.media.manifest import EpisodeManifest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SAMPLE_LOGLINES = SHARED / "loglines" / "samples.txt"


def sample_loglines() -> list[str]:
    """The shared sample loglines (../shared beside the repo), or a built-in set where that folder is absent."""
    if SAMPLE_LOGLINES.exists():
        return [line.strip() for line in SAMPLE_LOGLINES.read_text(encoding="utf-8").splitlines() if line.strip()]
    return ["A barista discovers a mysterious locket that signals danger.",
            "Un cartero entrega una carta que todavía no ha sido escrita."]


def build_manifest(episode_id: str = "test-ep", shot_seconds: tuple[float, ...] = (2.0, 2.0, 2.0)) -> EpisodeManifest:
    """A hand-written manifest (independent of the planner) for unit tests."""
    characters = [
        {"id": "maya", "name": "Maya", "role": "protagonist", "description": "a barista",
         "appearance": {"skin": "#c68c53", "hair": "#2b1a10", "outfit": "#2f6f8f", "accent": "#e0b040",
                        "hair_style": "long", "build": "slim", "height": 0.97},
         "voice": {"language": "en-us", "variant": "f2", "pitch": 62, "rate": 170}},
        {"id": "victor", "name": "Victor", "role": "stranger", "description": "a man in a grey coat",
         "appearance": {"skin": "#8d5524", "hair": "#111111", "outfit": "#555a60", "accent": "#a02020",
                        "hair_style": "short", "build": "broad", "height": 1.05},
         "voice": {"language": "en-us", "variant": "m3", "pitch": 35, "rate": 150}},
    ]
    beats = ["hook", "turn", "cliffhanger", "setup", "escalation", "reveal"]
    cameras = ["push_in", "pan_left", "handheld", "static", "tilt_up", "pull_out"]
    shots = []
    for index, seconds in enumerate(shot_seconds):
        speaker = "maya" if index % 2 == 0 else "victor"
        shots.append({
            "id": f"s{index + 1:02d}", "beat": beats[index % 6], "duration_s": seconds,
            "camera": cameras[index % 6], "action": "Maya turns the locket over in her hands.",
            "mood": ["mysterious", "tense", "eerie"][index % 3], "framing": ["medium", "two_shot", "close_up"][index % 3],
            "location": "cafe", "time_of_day": "night", "characters": ["maya", "victor"],
            "dialogue": [{"speaker": speaker, "text": "It is glowing."}], "keyframes": 2, "seed": 100 + index,
        })
    return EpisodeManifest.model_validate({
        "episode_id": episode_id, "title": "The Locket", "logline": "A barista finds a locket.", "seed": 1,
        "characters": characters, "shots": shots,
    })


@pytest.fixture
def small_manifest() -> EpisodeManifest:
    return build_manifest()


@pytest.fixture(scope="session")
def s3_endpoint():
    """A local S3 HTTP endpoint (moto's server) on 127.0.0.1; any credentials are accepted."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_credentials(monkeypatch):
    """Placeholder credentials for the local endpoint, so no real AWS configuration is ever read."""
    for name, value in (("AWS_ACCESS_KEY_ID", "microdrama-test"), ("AWS_SECRET_ACCESS_KEY", "microdrama-test"),
                        ("AWS_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
