/*
 * Shared by the preview pages: the preview token (taken from ?token= once, kept for this tab only), JSON calls to
 * the app's API, and a small DOM builder that only ever sets text, so manifest text never becomes markup.
 */
"use strict";

const TOKEN_KEY = "microdrama.preview_token";

/** Move ?token= from the address bar into this tab's session storage (out of history and screenshots). */
function takeTokenFromUrl() {
  const url = new URL(window.location.href);
  const token = url.searchParams.get("token");
  if (token) {
    window.sessionStorage.setItem(TOKEN_KEY, token);
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.toString());
  }
}

function previewToken() {
  return window.sessionStorage.getItem(TOKEN_KEY) || "";
}

function setPreviewToken(token) {
  window.sessionStorage.setItem(TOKEN_KEY, token.trim());
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Call the API; a non-2xx answer throws ApiError with the problem the server named. */
async function api(path, {method = "GET", body, token} = {}) {
  const headers = {};
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
  }
  if (token) {
    headers.Authorization = `Bearer ${token}`;
  }
  const response = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  const payload = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ApiError(response.status, payload.error || `${response.status} ${response.statusText}`);
  }
  return payload;
}

/** An element with attributes (on* names become listeners) and children (strings become text nodes). */
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) {
      continue;
    }
    if (name.startsWith("on")) {
      node.addEventListener(name.slice(2), value);
    } else if (name in node && typeof value !== "string") {
      node[name] = value;
    } else {
      node.setAttribute(name, value === true ? "" : value);
    }
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

function stateBadge(state) {
  return el("span", {class: `badge state-${state.replaceAll(" ", "-")}`}, state);
}
