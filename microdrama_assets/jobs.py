"""Three jobs make an episode: plan it (with its draft preview), render each shot (one run per shot partition),
assemble it; a fourth publishes it once a person approved the assembled package (trust/release_gate.py), and a
fifth measures what viewers did.
Their executor is the code location's (definitions.make_definitions, execution.executor_named)."""

from dagster import AssetSelection, define_asset_job

from .assets import ANALYTICS_ASSETS, EPISODE_ASSETS, PLANNING_ASSETS, PUBLISH_ASSETS, SHOT_ASSETS
from .execution import SHOT_RUN_TAGS

plan_episode_job = define_asset_job(
    "plan_episode", selection=AssetSelection.assets(*PLANNING_ASSETS),
    description="Plan the shot list, moderate it, make the fast draft preview and build the character bundles for "
                "one episode.",
)
render_shot_job = define_asset_job(
    "render_shot", selection=AssetSelection.assets(*SHOT_ASSETS),
    description="Storyboard, keyframes, dialogue, motion, compositing and ladder encode for one shot.",
    tags=SHOT_RUN_TAGS,
)
assemble_episode_job = define_asset_job(
    "assemble_episode", selection=AssetSelection.assets(*EPISODE_ASSETS),
    description="Mix, captions, master, HLS package and delivery manifest for one episode, ready for review.",
)
publish_episode_job = define_asset_job(
    "publish_episode", selection=AssetSelection.assets(*PUBLISH_ASSETS),
    description="Publish one episode's approved package to the object store players read (refused unless "
                "moderation cleared it and a person approved exactly this package).",
)
analyze_engagement_job = define_asset_job(
    "analyze_engagement", selection=AssetSelection.assets(*ANALYTICS_ASSETS),
    description="Engagement by shot from the episode's playback events, and suggestions for the next episode.",
)
