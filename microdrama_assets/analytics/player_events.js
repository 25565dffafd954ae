/*
 * microdrama playback analytics: reports how a <video> is watched to the collector (POST /api/events).
 *
 *   <script src="player_events.js"></script>
 *   const reporter = MicrodramaAnalytics.attach(video, hls, {episodeId: "my-episode"});
 *
 * `hls` is the hls.js instance playing the video (null where the browser plays HLS itself: rendition switches
 * are then not reported). Options: endpoint ("/api/events"), simulated (false), appVersion, flushIntervalMs
 * (2000), progressStepS (1), maxBatch (100 events a request), maxQueue (5000 events kept while the collector
 * cannot be reached).
 *
 * Events (the collector's schema, microdrama_assets/analytics/events.py): start on the first frame played,
 * progress each time the playhead has moved progressStepS, rendition_switch when hls.js switches level, stall
 * with its length when playback resumes after running out of data (waiting while seeking is not a stall), end,
 * and abandon when the page is hidden or left before the end. Events are batched and sent every
 * flushIntervalMs with fetch; a batch the collector could not store (a network error, 5xx) is sent again, which
 * the collector stores once. When the page is hidden or unloaded, what is left goes with navigator.sendBeacon.
 *
 * Plain ES2017, no dependencies.
 */
(function (global) {
  "use strict";

  const DEFAULTS = {
    endpoint: "/api/events",
    simulated: false,
    appVersion: null,
    flushIntervalMs: 2000,
    progressStepS: 1,
    maxBatch: 100,  // well under the collector's 500 and the 64 KB a beacon or keepalive fetch may carry
    maxQueue: 5000,
  };
  const EPISODE_ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;
  // RFC 6381 sample entries to the codec names the package uses for its folders (video/h264/720p/).
  const CODEC_FAMILIES = {avc1: "h264", avc3: "h264", hvc1: "hevc", hev1: "hevc", av01: "av1"};
  const VIEWER_KEY = "microdrama.viewer_id";

  function randomId() {
    if (typeof global.crypto.randomUUID === "function") {
      return global.crypto.randomUUID();
    }
    // randomUUID needs a secure context; getRandomValues does not.
    const bytes = global.crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // One ID per browser, kept where storage allows (private modes may refuse it: then one per page).
  function viewerId() {
    try {
      let id = global.localStorage.getItem(VIEWER_KEY);
      if (!id || !/^[A-Za-z0-9_-]{1,64}$/.test(id)) {
        id = randomId();
        global.localStorage.setItem(VIEWER_KEY, id);
      }
      return id;
    } catch (error) {
      return randomId();
    }
  }

  // "h264/720p" for an hls.js level: codec family and the picture's short side, as the package names it.
  function renditionLabel(level) {
    if (!level) {
      return null;
    }
    const codecs = level.videoCodec || (level.attrs && level.attrs.CODECS) || "";
    const family = codecs.split(",").map((c) => CODEC_FAMILIES[c.trim().slice(0, 4)]).find(Boolean);
    const side = Math.min(level.width || 0, level.height || 0);
    return family && side ? `${family}/${side}p` : null;
  }

  function attach(video, hls, options) {
    const settings = Object.assign({}, DEFAULTS, options);
    if (!EPISODE_ID.test(settings.episodeId || "")) {
      throw new Error(`MicrodramaAnalytics.attach: episodeId ${JSON.stringify(settings.episodeId)} is not an ` +
                      "episode ID (1-64 characters of a-z, 0-9, '-' or '_')");
    }
    const session = {episode_id: settings.episodeId, session_id: randomId(), viewer_id: viewerId()};
    const queue = [];
    let seq = 0;
    let rendition = null;
    let started = false;
    let ended = false;
    let left = false;  // an abandon was sent; cleared if the viewer comes back and plays on
    let stallStartedAt = null;
    let lastProgressAt = 0;
    let sending = false;

    function position() {
      return Math.max(0, Number((video.currentTime || 0).toFixed(3)));
    }

    function record(type, fields) {
      const event = Object.assign({}, session, {
        seq: seq++,
        type: type,
        client_ts: new Date().toISOString(),
        position_s: position(),
        simulated: Boolean(settings.simulated),
        user_agent: String(global.navigator.userAgent || "").slice(0, 256),
      }, fields);
      if (rendition) {
        event.rendition = rendition;
      }
      if (settings.appVersion) {
        event.app_version = settings.appVersion;
      }
      queue.push(event);
      if (queue.length > settings.maxQueue) {
        queue.splice(0, queue.length - settings.maxQueue);  // the collector has been gone long: keep the newest
      }
    }

    function endStall() {
      if (stallStartedAt !== null) {
        const seconds = (global.performance.now() - stallStartedAt) / 1000;
        stallStartedAt = null;
        if (seconds > 0) {
          record("stall", {stall_s: Number(Math.min(seconds, 600).toFixed(3))});
        }
      }
    }

    function send() {
      if (sending || !queue.length) {
        return;
      }
      const batch = queue.splice(0, settings.maxBatch);
      sending = true;
      global.fetch(settings.endpoint, {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify(batch),
        keepalive: true,  // lets the request finish if the page goes away meanwhile
        credentials: "omit",
      }).then((response) => {
        if (response.status >= 500) {
          queue.unshift(...batch);  // not stored: try again next time
        } else if (!response.ok && response.status !== 207) {
          global.console.warn(`microdrama analytics: the collector refused ${batch.length} events ` +
                              `(${response.status})`);
        }
      }, () => {
        queue.unshift(...batch);
      }).then(() => {
        sending = false;
      });
    }

    function sendBeacons() {
      while (queue.length && global.navigator.sendBeacon) {
        // A string body goes as text/plain, which needs no CORS preflight.
        if (!global.navigator.sendBeacon(settings.endpoint, JSON.stringify(queue.slice(0, settings.maxBatch)))) {
          return;  // the browser refused (over its quota): the rest stays queued for fetch
        }
        queue.splice(0, settings.maxBatch);
      }
    }

    function leave() {
      if (started && !ended && !left) {
        endStall();
        record("abandon");
        left = true;
      }
      sendBeacons();
    }

    const videoListeners = {
      playing() {
        if (!started) {
          started = true;
          record("start");
        }
        endStall();
        left = false;
      },
      waiting() {
        if (started && !ended && !video.seeking && stallStartedAt === null) {
          stallStartedAt = global.performance.now();
        }
      },
      timeupdate() {
        if (started && !video.seeking && Math.abs(video.currentTime - lastProgressAt) >= settings.progressStepS) {
          lastProgressAt = video.currentTime;
          record("progress");
        }
      },
      ended() {
        endStall();
        ended = true;
        record("end");
        send();
      },
      play() {
        ended = false;  // played again after the end: a new pass of the same session
      },
    };
    function onVisibility() {
      if (global.document.visibilityState === "hidden") {
        leave();
      }
    }
    function onLevelSwitched(_, data) {
      const label = renditionLabel(hls.levels[data.level]);
      if (label && label !== rendition) {
        rendition = label;
        record("rendition_switch");
      }
    }

    Object.keys(videoListeners).forEach((name) => video.addEventListener(name, videoListeners[name]));
    global.document.addEventListener("visibilitychange", onVisibility);
    global.addEventListener("pagehide", leave);
    // The event names hang off the hls.js class, whether it came as a global or from a module import.
    const hlsEvents = hls ? hls.constructor.Events : null;
    if (hls) {
      hls.on(hlsEvents.LEVEL_SWITCHED, onLevelSwitched);
    }
    const timer = global.setInterval(send, settings.flushIntervalMs);

    return {
      sessionId: session.session_id,
      viewerId: session.viewer_id,
      /** Send what is queued now (fetch), instead of at the next interval. */
      flush: send,
      /** Events recorded but not yet sent. */
      pending: () => queue.length,
      /** Stop reporting: an abandon if the episode is still playing, everything queued sent by beacon. */
      detach() {
        leave();
        global.clearInterval(timer);
        Object.keys(videoListeners).forEach((name) => video.removeEventListener(name, videoListeners[name]));
        global.document.removeEventListener("visibilitychange", onVisibility);
        global.removeEventListener("pagehide", leave);
        if (hls) {
          hls.off(hlsEvents.LEVEL_SWITCHED, onLevelSwitched);
        }
      },
    };
  }

  global.MicrodramaAnalytics = {attach: attach, renditionLabel: renditionLabel};
})(window);
