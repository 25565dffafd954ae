/* The episode list: title, state and package version of every planned episode. */
"use strict";

async function showEpisodes() {
  takeTokenFromUrl();
  const status = document.getElementById("status");
  const table = document.getElementById("episodes");
  let episodes;
  try {
    ({episodes} = await api("/api/episodes"));
  } catch (error) {
    status.textContent = `Could not list the episodes: ${error.message}`;
    return;
  }
  if (episodes.length === 0) {
    status.textContent = "No episodes yet: make one with `microdrama episode \"LOGLINE\"`.";
    return;
  }
  status.textContent = `${episodes.length} episode${episodes.length === 1 ? "" : "s"}`;
  table.tBodies[0].replaceChildren(...episodes.map((episode) => el("tr", {"data-episode": episode.episode_id},
    el("td", {}, el("a", {href: `/episodes/${encodeURIComponent(episode.episode_id)}`}, episode.title),
       el("div", {class: "muted"}, episode.episode_id)),
    el("td", {}, stateBadge(episode.state)),
    el("td", {class: "version"}, episode.version || "—"),
    el("td", {}, episode.shots),
    el("td", {}, `${episode.duration_s.toFixed(1)} s`))));
  table.hidden = false;
}

showEpisodes();
