"""Playback analytics, free of Dagster: what players report (events), where it is kept (event_store), the
endpoint that receives it (collector, with the browser-side reporter player_events.js beside it), synthetic
viewers (simulator), per-shot engagement (engagement) and the changes it suggests for the next episode
(suggestions)."""

from pathlib import Path

# The browser-side reporter, for the preview page and apps to serve (MicrodramaAnalytics.attach).
PLAYER_SCRIPT = Path(__file__).with_name("player_events.js")
