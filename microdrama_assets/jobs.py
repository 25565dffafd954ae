"""Three jobs make an episode: plan it, render each shot (one run per shot partition), assemble it. Their
executor is the code location's (definitions.make_definitions, execution.executor_named)."""

from dagster import AssetSelection, define_asset_job

from .assets import EPISODE_ASSETS, PLANNING_ASSETS, SHOT_ASSETS
from .execution import SHOT_RUN_TAGS

plan_episode_job = define_asset_job(
    "plan_episode", selection=AssetSelection.assets(*PLANNING_ASSETS),
    description="Plan the shot list and build the character bundles for one episode.",
)
render_shot_job = define_asset_job(
    "render_shot", selection=AssetSelection.assets(*SHOT_ASSETS),
    description="Storyboard, keyframes, dialogue, motion, compositing and ladder encode for one shot.",
    tags=SHOT_RUN_TAGS,
)
assemble_episode_job = define_asset_job(
    "assemble_episode", selection=AssetSelection.assets(*EPISODE_ASSETS),
    description="Mix, captions, master, HLS package and delivery manifest for one episode.",
)
