/*
 * The episode page: plays the package (hls.js, or the browser's own HLS), reports playback to the analytics
 * collector, shows checks, keyframes and the manifest, and lets the creator edit a shot, re-render it and approve
 * the package. What the page knows is kept in window.preview, which the browser test reads.
 */
"use strict";

const MAX_DIALOGUE_LINES = 4;  // the manifest's limit per shot
const JOB_POLL_MS = 1000;
const WAITING_POLL_MS = 5000;  // while there is no package yet (the draft preview grows, a render may land)

const episodeId = decodeURIComponent(window.location.pathname.split("/").filter(Boolean).pop());
const video = document.getElementById("video");
const preview = window.preview = {
  episodeId,
  detail: null,
  player: {kind: null, url: null, loads: 0},
  job: null,
  approval: null,
};
let hls = null;
let reporter = null;
let waitingTimer = null;

function showError(message) {
  const error = document.getElementById("error");
  error.textContent = message;
  error.hidden = !message;
}

function tokenOrComplain() {
  const token = document.getElementById("token").value.trim();
  if (!token) {
    throw new Error("enter the preview token (printed by `microdrama preview`) first");
  }
  setPreviewToken(token);
  return token;
}

// --- player -------------------------------------------------------------------------------------------------------

function loadPlayer(player) {
  const status = document.getElementById("player-status");
  if (!player) {
    status.textContent = "Nothing to play yet: the episode has not been rendered.";
    return;
  }
  if (player.url === preview.player.url) {
    return;
  }
  if (reporter) {
    reporter.detach();
    reporter = null;
  }
  if (hls) {
    hls.destroy();
    hls = null;
  }
  video.poster = player.poster || "";
  if (window.Hls && window.Hls.isSupported()) {
    // The draft is an EVENT playlist, which hls.js treats as live: start it from the top, not the newest segment.
    hls = new window.Hls(player.kind === "draft" ? {startPosition: 0} : {});
    hls.on(window.Hls.Events.ERROR, (_, data) => {
      if (data.fatal) {
        status.textContent = `Playback failed: ${data.type} ${data.details}`;
      }
    });
    hls.loadSource(player.url);
    hls.attachMedia(video);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = player.url;  // Safari plays HLS itself
  } else {
    status.textContent = "This browser plays neither HLS nor Media Source Extensions.";
    return;
  }
  if (window.MicrodramaAnalytics) {
    reporter = window.MicrodramaAnalytics.attach(video, hls, {episodeId});
  }
  preview.player = {kind: player.kind, url: player.url, loads: preview.player.loads + 1};
  status.textContent = player.kind === "draft"
    ? "Playing the draft preview (360x640) while the full render runs."
    : `Playing package version ${preview.detail.version}.`;
}

// --- checks, shots and the edit form ---------------------------------------------------------------------------

function checkItem(check) {
  const status = check.status.replace(" ", "-");
  return el("li", {class: status, "data-check": check.check, title: `on ${check.asset}`},
    `${check.check}: ${check.status}`, check.problems ? el("span", {class: "problems"}, check.problems) : null);
}

function dialogueLine(characters, line) {
  const speaker = el("select", {name: "speaker"},
    characters.map((c) => el("option", {value: c.id, selected: line.speaker === c.id}, c.name)));
  const text = el("input", {name: "text", value: line.text || "", maxlength: "280"});
  const row = el("div", {class: "line"}, speaker, text,
    el("button", {type: "button", title: "remove this line", onclick: () => row.remove()}, "×"));
  return row;
}

function formEdit(form) {
  return {
    action: form.querySelector("textarea[name=action]").value,
    dialogue: Array.from(form.querySelectorAll(".line"), (row) => ({
      speaker: row.querySelector("select[name=speaker]").value,
      text: row.querySelector("input[name=text]").value,
    })),
  };
}

function sameEdit(edit, shot) {
  return edit.action.trim() === shot.action && JSON.stringify(edit.dialogue.map((l) => [l.speaker, l.text.trim()]))
    === JSON.stringify(shot.dialogue.map((l) => [l.speaker, l.text]));
}

async function saveEdit(shot, form, message) {
  const edit = formEdit(form);
  if (sameEdit(edit, shot)) {
    return false;
  }
  const saved = await api(`/api/episodes/${episodeId}/shots/${shot.id}`, {method: "PUT", body: edit,
                                                                          token: tokenOrComplain()});
  Object.assign(shot, saved.shot);
  message.textContent = saved.changed ? "Saved to manifest.json." : "No change.";
  return saved.changed;
}

function shotCard(shot, characters, version) {
  const onScreen = characters.filter((c) => shot.characters.includes(c.id));
  const lines = el("div", {class: "lines"}, shot.dialogue.map((line) => dialogueLine(onScreen, line)));
  const message = el("p", {class: "message muted"});
  const form = el("form", {onsubmit: (event) => event.preventDefault()},
    el("label", {}, "Action", el("textarea", {name: "action", maxlength: "400"}, shot.action)),
    el("div", {}, "Dialogue"), lines,
    onScreen.length ? el("button", {type: "button", class: "add-line", onclick: () => {
      if (lines.children.length < MAX_DIALOGUE_LINES) {
        lines.append(dialogueLine(onScreen, {speaker: onScreen[0].id, text: ""}));
      }
    }}, "Add a line") : null,
    el("div", {},
      el("button", {type: "button", class: "save", onclick: () => run(message, () => saveEdit(shot, form, message))},
        "Save"),
      el("button", {type: "button", class: "rerender", onclick: () => run(message, async () => {
        await saveEdit(shot, form, message);
        const job = await api(`/api/episodes/${episodeId}/render`, {method: "POST", body: {shots: [shot.id]},
                                                                   token: tokenOrComplain()});
        message.textContent = `Re-render of ${shot.id} queued.`;
        await watchJob(job);
      })}, "Re-render this shot")),
    message);
  return el("article", {class: "shot", "data-shot": shot.id},
    el("div", {},
      el("h3", {}, `${shot.id} · ${shot.beat} · ${shot.duration_s.toFixed(1)} s`),
      shot.stale_stage
        ? el("p", {class: "stale"}, `Changed since its render: a re-render runs from ${shot.stale_stage}.`)
        : null,
      el("ul", {class: "checks"}, shot.checks.map(checkItem)),
      form),
    el("img", {alt: `keyframes of ${shot.id}`,
               src: `/api/episodes/${episodeId}/contact-sheet.jpg?shot=${shot.id}&v=${version || "none"}`}));
}

/** Run an action for a button: its failure is shown beside it, not thrown away. */
async function run(message, action) {
  try {
    await action();
  } catch (error) {
    message.textContent = error.message;
    message.classList.add("problems");
    return;
  }
  message.classList.remove("problems");
}

// --- jobs -------------------------------------------------------------------------------------------------------

function showJob(job) {
  preview.job = job;
  document.getElementById("job").hidden = false;
  document.getElementById("job-state").replaceChildren(stateBadge(job.state));
  document.getElementById("job-message").textContent = `${job.kind}${job.shots.length ? " " + job.shots.join(", ")
    : ""}: ${job.message}`;
  document.getElementById("job-progress").replaceChildren(...job.progress.map((line) => el("li", {}, line)));
  const runs = document.getElementById("job-runs");
  runs.tBodies[0].replaceChildren(...job.runs.map((r) => el("tr", {"data-run-job": r.job},
    el("td", {}, el("code", {}, r.run_id.slice(0, 8))), el("td", {}, r.job), el("td", {}, r.partition),
    el("td", {}, r.status))));
  runs.hidden = job.runs.length === 0;
}

/** Follow a job until it ends, then show the episode as it is now (a new package plays at once). */
async function watchJob(job) {
  showJob(job);
  while (job.state === "queued" || job.state === "running") {
    await new Promise((resolve) => window.setTimeout(resolve, JOB_POLL_MS));
    job = await api(`/api/jobs/${job.id}`);
    showJob(job);
  }
  await refresh();
  return job;
}

// --- approval -----------------------------------------------------------------------------------------------------

async function approveShownVersion() {
  const version = preview.detail.version;
  const result = await api(`/api/episodes/${episodeId}/approve`, {method: "POST", token: tokenOrComplain(), body: {
    approved_by: document.getElementById("approve-name").value,
    note: document.getElementById("approve-note").value,
    version,
  }});
  preview.approval = result.approval;
  document.getElementById("approval").textContent =
    `Version ${result.approval.version} approved by ${result.approval.approved_by}; publishing…`;
  const job = await watchJob(result.job);
  if (job.state === "failed") {
    throw new Error(`Approved, but publishing failed: ${job.message}`);
  }
}

function showApproval(detail) {
  document.getElementById("approve-version").textContent = detail.version || "— (not assembled yet)";
  document.getElementById("blockers").replaceChildren(...detail.moderation_blockers.map((b) => el("li", {}, b)));
  const button = document.getElementById("approve-button");
  button.disabled = !detail.version || detail.state === "rendering";
  button.textContent = detail.version ? `Approve version ${detail.version} and publish` : "Approve and publish";
  if (detail.approval) {
    document.getElementById("approval").textContent =
      `Version ${detail.approval.version} approved by ${detail.approval.approved_by}.`;
  }
  const published = document.getElementById("published");
  published.hidden = !detail.published;
  if (detail.published) {
    const link = document.getElementById("published-url");
    link.textContent = detail.published.master_url + (detail.published.current ? "" : " (an earlier version)");
    link.href = detail.published.master_url;
  }
}

// --- the page -----------------------------------------------------------------------------------------------------

function show(detail) {
  preview.detail = detail;
  document.title = `${detail.title} · microdrama preview`;
  document.getElementById("title").textContent = detail.title;
  document.getElementById("state").replaceChildren(stateBadge(detail.state));
  document.getElementById("version").textContent = detail.version || "—";
  document.getElementById("episode-checks").replaceChildren(...detail.checks.map(checkItem));
  document.getElementById("shots").replaceChildren(
    ...detail.shots.map((shot) => shotCard(shot, detail.characters, detail.version)));
  document.getElementById("contact-sheet").src =
    `/api/episodes/${episodeId}/contact-sheet.jpg?v=${detail.version || "none"}`;
  showApproval(detail);
  loadPlayer(detail.player);
}

async function refresh() {
  const detail = await api(`/api/episodes/${episodeId}`);
  show(detail);
  const manifest = await api(`/api/episodes/${episodeId}/manifest`);
  document.getElementById("manifest").textContent = JSON.stringify(manifest, null, 2);
  window.clearTimeout(waitingTimer);
  if (!detail.player || detail.player.kind === "draft") {
    waitingTimer = window.setTimeout(() => refresh().catch((error) => showError(error.message)), WAITING_POLL_MS);
  }
  return detail;
}

async function start() {
  takeTokenFromUrl();
  const token = document.getElementById("token");
  token.value = previewToken();
  token.addEventListener("change", () => setPreviewToken(token.value));
  const approval = document.getElementById("approval");
  document.getElementById("approve-button").addEventListener("click", () => run(approval, approveShownVersion));
  try {
    const detail = await refresh();
    if (detail.job && (detail.job.state === "queued" || detail.job.state === "running")) {
      await watchJob(detail.job);
    }
  } catch (error) {
    showError(`Could not load episode ${episodeId}: ${error.message}`);
  }
}

start();
