from .analytics import engagement_metrics, next_episode_suggestions
from .audio import dialogue_audio, episode_audio, episode_mix_meets_loudness_targets
from .compositing import composited_shot, composited_shot_captions_legible, composited_shot_lip_sync
from .delivery import (delivery_manifest, episode_captions, episode_master, hls_package, published_episode,
                       published_episode_plays)
from .encoding import shot_renditions
from .keyframes import keyframes, keyframes_keep_their_characters, storyboard
from .moderation import episode_manifest_passes_moderation, keyframes_pass_moderation
from .motion import shot_clip
from .planning import character_bundles, episode_manifest, episode_preview

PLANNING_ASSETS = [episode_manifest, episode_preview, character_bundles]
SHOT_ASSETS = [storyboard, keyframes, dialogue_audio, shot_clip, composited_shot, shot_renditions]
EPISODE_ASSETS = [episode_audio, episode_captions, episode_master, hls_package, delivery_manifest]
PUBLISH_ASSETS = [published_episode]
ANALYTICS_ASSETS = [engagement_metrics, next_episode_suggestions]
ALL_ASSETS = PLANNING_ASSETS + SHOT_ASSETS + EPISODE_ASSETS + PUBLISH_ASSETS + ANALYTICS_ASSETS
ASSET_CHECKS = [episode_manifest_passes_moderation, keyframes_pass_moderation, keyframes_keep_their_characters,
                composited_shot_lip_sync, composited_shot_captions_legible, episode_mix_meets_loudness_targets,
                published_episode_plays]
