"""Engagement analytics by shot: what viewers of the episode did (the playback events the collector stored), and
what the next episode should do differently because of it."""

import json

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from ..analytics.engagement import EngagementReport, engagement_metrics as measure_engagement, retention_plot_png
from ..analytics.event_store import open_event_store
from ..analytics.suggestions import next_episode_suggestions as suggest_changes, planner_guidance
from ..partitions import episode_partitions
from ..resources import AnalyticsSettings, ArtifactStoreResource
from .common import episode_artifacts, png_metadata
from .delivery import delivery_manifest


@asset(partitions_def=episode_partitions, group_name="analytics", deps=[delivery_manifest])
def engagement_metrics(context: AssetExecutionContext, store: ArtifactStoreResource,
                       analytics: AnalyticsSettings) -> MaterializeResult:
    """Per shot (by the delivery manifest's shot boundaries): viewers reaching it, watch-through and drop-off;
    the retention curve (plotted), completion, rebuffer ratio and rendition mix, from the episode's playback
    events; simulated sessions are counted apart and the report says when its data is simulated."""
    episode = episode_artifacts(context, store)
    delivery = episode.store.read_json(episode.delivery_json, "delivery_manifest")
    events = open_event_store(analytics.events)
    try:
        frame = events.events(episode.episode_id)
    finally:
        events.close()
    report = measure_engagement(frame, delivery)
    plot = retention_plot_png(report)
    episode.store.write_text(episode.engagement_json, report.model_dump_json(indent=2))
    episode.store.write_bytes(episode.retention_png, plot)

    def share(value):
        return "-" if value is None else f"{value:.0%}"

    return MaterializeResult(metadata={
        "sessions": report.sessions,
        "data_source": report.data_source,
        "completion_rate": share(report.completion_rate),
        "rebuffer_ratio": share(report.rebuffer_ratio),
        "rendition_mix": ", ".join(f"{name} {part:.0%}" for name, part in report.rendition_mix.items()) or "-",
        "shots": MetadataValue.md("| shot | reached | watch-through | drop-off |\n|---|---|---|---|\n" + "\n".join(
            f"| {s.shot_id} | {s.entered} | {share(s.watch_through)} | {share(s.drop_off)} |" for s in report.shots)),
        "retention_curve": png_metadata(plot, "retention curve"),
        "path": MetadataValue.path(str(episode.engagement_json)),
    })


@asset(partitions_def=episode_partitions, group_name="analytics", deps=[engagement_metrics])
def next_episode_suggestions(context: AssetExecutionContext, store: ArtifactStoreResource) -> MaterializeResult:
    """Concrete changes for the next episode, ranked by the share of viewers each would keep (shorten or
    re-hook the shot where most viewers leave, a stronger opening, a shorter episode, fewer stalls), and the
    planner guidance they add up to: ``microdrama episode ... --learn-from EPISODE`` plans with it."""
    episode = episode_artifacts(context, store)
    report = EngagementReport.model_validate_json(
        episode.store.require(episode.engagement_json, "engagement_metrics").read_text(encoding="utf-8"))
    suggestions = suggest_changes(report, episode.manifest())
    payload = {"episode_id": episode.episode_id, "sessions": report.sessions, "data_source": report.data_source,
               "suggestions": [s.model_dump(mode="json") for s in suggestions],
               "planner_guidance": planner_guidance(suggestions)}
    episode.store.write_text(episode.suggestions_json, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return MaterializeResult(metadata={
        "suggestions": len(suggestions),
        "top": suggestions[0].message if suggestions else "none (too few sessions, or nothing stands out)",
        "all": MetadataValue.md("\n".join(f"{n}. {s.message}" for n, s in enumerate(suggestions, 1)) or "none"),
        "planner_guidance": MetadataValue.json(payload["planner_guidance"]),
        "path": MetadataValue.path(str(episode.suggestions_json)),
    })
