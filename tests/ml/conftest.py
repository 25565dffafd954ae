"""A one-shot episode with every upstream artifact made by the embedded backends, so each model backend's test
can materialize just its own asset through Dagster with that backend selected."""

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from dagster import DagsterInstance, materialize

import microdrama_assets.ml  # noqa: F401  (first: it makes an installed torchaudio importable, see there)

from microdrama_assets.artifacts import EpisodeArtifacts
from microdrama_assets.assets import character_bundles, dialogue_audio, keyframes, shot_clip, storyboard
from microdrama_assets.partitions import shot_partition_key, shot_slot_partitions
from microdrama_assets.resources import ArtifactStoreResource, BackendSettings, EncodeSettings
from microdrama_assets.storage import ArtifactStore

from conftest import build_manifest

# The test models are tiny: one thread runs them fastest, and several threads on a busy 2-core machine run them
# many times slower.
torch.set_num_threads(1)

EPISODE = "ml-ep"
SHOT = "s01"


@dataclass
class MlEpisode:
    root: Path
    store: ArtifactStore
    episode: EpisodeArtifacts
    instance: DagsterInstance

    @property
    def shot(self):
        return self.episode.shot(SHOT)

    @property
    def partition_key(self) -> str:
        return shot_partition_key(EPISODE, SHOT)

    def materialize(self, assets: list, backends: BackendSettings, raise_on_error: bool = True):
        """Materialize ``assets`` for the episode's shot with ``backends`` (the asset checks are left out)."""
        return materialize(assets, partition_key=self.partition_key, instance=self.instance,
                           resources=self.resources(backends), raise_on_error=raise_on_error,
                           selection=assets)

    def resources(self, backends: BackendSettings) -> dict:
        return {"store": ArtifactStoreResource(root=str(self.root)), "backends": backends,
                "encode": EncodeSettings(preset="draft")}


@pytest.fixture(scope="module")
def ml_episode(tmp_path_factory) -> MlEpisode:
    """A 1.5-s shot with two characters and a line of dialogue, rendered up to its clip and dialogue with the
    embedded backends."""
    root = tmp_path_factory.mktemp("ml-data")
    store = ArtifactStore(root)
    episode = EpisodeArtifacts(store, EPISODE)
    manifest = build_manifest(EPISODE, shot_seconds=(1.5,))
    store.write_text(episode.manifest_path, manifest.model_dump_json(indent=2))
    store.write_json(episode.request, {"logline": manifest.logline, "shots": 1, "seed": manifest.seed,
                                       "duration_s": 1.5})
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("episodes", [EPISODE])
    instance.add_dynamic_partitions(shot_slot_partitions.name, manifest.shot_ids)
    prepared = MlEpisode(root, store, episode, instance)
    embedded = BackendSettings(planner="embedded", keyframes="embedded", voice="embedded", motion="embedded",
                               lipsync="embedded")
    assert materialize([character_bundles], partition_key=EPISODE, instance=instance,
                       resources=prepared.resources(embedded)).success
    prepared.materialize([storyboard, keyframes, shot_clip, dialogue_audio], embedded)
    return prepared
