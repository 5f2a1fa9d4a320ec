// The board's client: one WebSocket for messages, one per job for progress. Reconnects with
// exponential backoff and jitter and resumes from the last message id it has shown, so every
// message appears exactly once, in order, even across disconnects.
//
// Without WebSocket it polls (issue 14, README "Falling back to polling"). The page lists what the
// deployment offers in the messages list's data-transports, preferred first ("websocket longpoll
// poll", or "poll" where only the WSGI server runs). The page starts with the first; it moves to the
// next when this one never worked: WebSocket missing from the browser, or WS_FAILURES_BEFORE_FALLBACK
// sockets in a row closed before the server's `ready` (a proxy that strips Upgrade, one that never
// passes a frame: READY_TIMEOUT_MS), or a long poll answered 404 (it reached the WSGI server) or
// failing twice before it ever answered. A transport that worked once stays: its failures later
// (Daphne restarting) are retried with the same backoff. Every transport asks with ?after=<last id
// shown>, so every message appears once, in order, whichever carries it.
"use strict";

(function () {
  const wsBase = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
  const list = document.getElementById("messages");
  const indicator = document.getElementById("connection");
  let lastId = Number(list.dataset.lastId || 0);

  const LABELS = {
    websocket: "live (WebSocket)",
    longpoll: "live (long polling)",
    poll: "live (polling every 2 s)",
  };
  // Short polling's period; a job's progress is polled as often when there is no WebSocket.
  const POLL_MS = 2000;
  // Seconds a long poll waits on the server for the next message (the API allows 0 to 55).
  const LONGPOLL_TIMEOUT_S = 25;
  const WS_FAILURES_BEFORE_FALLBACK = 2;
  const LONGPOLL_FAILURES_BEFORE_FALLBACK = 2;
  // A socket that has not said `ready` this long after it was created counts as failed: longer than
  // Nginx holds a handshake over its rate limits (up to ~10 s, README "Handshake limits").
  const READY_TIMEOUT_MS = 15000;
  const offered = (list.dataset.transports || "websocket longpoll poll").split(/\s+/).filter((name) => name in LABELS);
  // The transport in use: "websocket", "longpoll", "poll", or null when none is left.
  let transport = null;

  function csrfToken() {
    return document.querySelector("input[name=csrfmiddlewaretoken]").value;
  }

  // Delay before reconnect attempt n: 0.5 s doubling up to 30 s, times a random 50–100 %, so
  // clients dropped together do not all come back in the same instant. The browser spreads nothing
  // by itself: every page on a killed Daphne sees its close at once, and Chrome runs the timers of
  // hidden tabs together on whole seconds, so without jitter each attempt of a whole office (one
  // NAT address) would be one burst. Nginx holds a handshake over its limits (up to ~10 s) rather
  // than refusing it (README "Handshake limits"), so the first attempt is normally the last; a
  // refusal counts as a failed attempt, and Firefox then adds a delay of its own.
  // Close code of a drained host (board.consumers.CLOSE_DRAINED).
  const DRAINED = 4012;

  function backoff(attempt) {
    const ceiling = Math.min(30000, 500 * 2 ** attempt);
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  function setIndicator(state, text) {
    indicator.className = "connection " + state;
    indicator.textContent = text;
  }

  function showMessage(message) {
    if (message.id <= lastId) return; // already shown
    const item = document.createElement("li");
    item.dataset.id = message.id;
    const time = document.createElement("time");
    time.dateTime = message.created;
    // HH:MM:SS in UTC, as the server renders the first page (TIME_ZONE = "UTC").
    time.textContent = new Date(message.created).toISOString().slice(11, 19);
    const text = document.createElement("span");
    text.className = "text";
    // Each message runs in its own direction (Hebrew, Arabic: right to left), isolated from the rest.
    text.dir = "auto";
    text.textContent = message.text;
    item.append(time, " ", text);
    list.append(item);
    lastId = message.id;
    list.scrollTop = list.scrollHeight;
  }

  // The first offered transport after `previous` (from the start without one) this browser can use.
  function nextTransport(previous) {
    const rest = previous ? offered.slice(offered.indexOf(previous) + 1) : offered;
    return rest.find((name) => name !== "websocket" || typeof WebSocket === "function") || null;
  }

  function start(name) {
    transport = name;
    if (name === "websocket") connectBoard(0, 0);
    else if (name === "longpoll") longPoll(0, 0, false);
    else if (name === "poll") shortPoll(0);
    else setIndicator("offline", "offline (no transport works here)");
  }

  // WebSocket: `failures` counts sockets closed before ever reaching `ready`, until one does.
  let wsWorked = false;

  function connectBoard(attempt, failures) {
    let socket;
    try {
      socket = new WebSocket(wsBase + "/ws/board/?after=" + lastId);
    } catch (err) {
      start(nextTransport("websocket")); // a browser that refuses to open one at all
      return;
    }
    let ready = false;
    const readyTimer = setTimeout(() => socket.close(), READY_TIMEOUT_MS);
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "message") showMessage(frame);
      else if (frame.type === "ready") {
        clearTimeout(readyTimer);
        ready = wsWorked = true;
        attempt = 0;
        setIndicator("live", LABELS.websocket);
      } else if (frame.type === "error") document.getElementById("post-error").textContent = frame.error;
    };
    socket.onclose = (event) => {
      clearTimeout(readyTimer);
      if (!wsWorked && !ready && failures + 1 >= WS_FAILURES_BEFORE_FALLBACK) {
        start(nextTransport("websocket"));
        return;
      }
      // 4012: the host is drained (a rolling deploy) and the load balancer already sends new
      // sockets elsewhere: come back at once, spread over 0.25 s rather than backing off.
      const drained = event.code === DRAINED;
      const delay = drained ? Math.random() * 250 : backoff(attempt);
      setIndicator("reconnecting", "reconnecting…");
      setTimeout(() => connectBoard(drained ? 0 : attempt + 1, ready || wsWorked ? 0 : failures + 1), delay);
    };
  }

  async function getJson(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    const data = await response.json().catch(() => ({ error: "HTTP " + response.status }));
    return { status: response.status, ok: response.ok, data };
  }

  // Long polling: the next request as soon as an answer came (it waited on the server).
  async function longPoll(attempt, failures, worked) {
    let answer = null;
    // The first request, and the first after a failure, does not wait: its answer says at once
    // whether long polling works, and the indicator can say so.
    const wait = worked && attempt === 0 ? LONGPOLL_TIMEOUT_S : 0;
    try {
      answer = await getJson("/api/messages/wait?after=" + lastId + "&timeout=" + wait);
    } catch (err) {
      answer = null; // the network failed, or the proxy cut the request
    }
    if (answer && answer.ok) {
      answer.data.messages.forEach(showMessage);
      setIndicator("live", LABELS.longpoll);
      setTimeout(() => longPoll(0, 0, true), 0);
      return;
    }
    // 404: the request reached the WSGI server, which has no long polling.
    if ((answer && answer.status === 404) || (!worked && failures + 1 >= LONGPOLL_FAILURES_BEFORE_FALLBACK)) {
      start(nextTransport("longpoll"));
      return;
    }
    setIndicator("reconnecting", "reconnecting…");
    setTimeout(() => longPoll(attempt + 1, failures + 1, worked), backoff(attempt));
  }

  // Short polling: every POLL_MS, at once again while the server says more messages follow.
  async function shortPoll(attempt) {
    try {
      const answer = await getJson("/api/messages?after=" + lastId);
      if (!answer.ok) throw new Error(answer.data.error);
      answer.data.messages.forEach(showMessage);
      setIndicator("live", LABELS.poll);
      setTimeout(() => shortPoll(0), answer.data.has_more ? 0 : POLL_MS);
    } catch (err) {
      setIndicator("reconnecting", "reconnecting…");
      setTimeout(() => shortPoll(attempt + 1), Math.max(POLL_MS, backoff(attempt)));
    }
  }

  async function postJson(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    const data = await response.json().catch(() => ({ error: "HTTP " + response.status }));
    if (!response.ok) throw new Error(data.error || "HTTP " + response.status);
    return data;
  }

  document.getElementById("post-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = document.getElementById("text");
    const error = document.getElementById("post-error");
    error.textContent = "";
    const text = input.value;
    try {
      // The message is shown when it arrives over the socket, like everyone else's.
      await postJson("/api/messages", { text });
      // Keep whatever was typed while the post was on its way.
      if (input.value === text) input.value = "";
    } catch (err) {
      error.textContent = err.message;
    }
  });

  function showJob(state, bar, label) {
    bar.max = state.total;
    bar.value = state.done;
    label.textContent = "Job " + state.id + ": " + state.state + " (" + state.done + "/" + state.total + ")";
  }

  // A job's progress over its own socket while the board's transport is WebSocket; otherwise polled.
  function watchJob(job, bar, label, attempt) {
    if (transport !== "websocket") {
      pollJob(job, bar, label, 0);
      return;
    }
    const socket = new WebSocket(wsBase + "/ws/jobs/" + job.id + "/");
    let finished = false;
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type !== "job.progress") return;
      attempt = 0;
      showJob(frame, bar, label);
      if (frame.state === "finished") {
        finished = true;
        socket.close();
      }
    };
    socket.onclose = (event) => {
      if (finished) return;
      if (event.code === DRAINED) setTimeout(() => watchJob(job, bar, label, 0), Math.random() * 250);
      else setTimeout(() => watchJob(job, bar, label, attempt + 1), backoff(attempt));
    };
  }

  // GET /api/jobs/<id> every POLL_MS until the job is finished.
  async function pollJob(job, bar, label, attempt) {
    try {
      const answer = await getJson("/api/jobs/" + job.id);
      if (!answer.ok) throw new Error(answer.data.error);
      showJob(answer.data, bar, label);
      if (answer.data.state !== "finished") setTimeout(() => pollJob(job, bar, label, 0), POLL_MS);
    } catch (err) {
      setTimeout(() => pollJob(job, bar, label, attempt + 1), Math.max(POLL_MS, backoff(attempt)));
    }
  }

  document.getElementById("job-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = document.getElementById("job-error");
    error.textContent = "";
    try {
      const job = await postJson("/api/jobs", { steps: Number(document.getElementById("steps").value) });
      const item = document.createElement("li");
      item.dataset.jobId = job.id;
      const label = document.createElement("div");
      label.textContent = "Job " + job.id + ": " + job.state;
      const bar = document.createElement("progress");
      bar.value = 0;
      item.append(label, bar);
      document.getElementById("jobs").prepend(item);
      watchJob(job, bar, label, 0);
    } catch (err) {
      error.textContent = err.message;
    }
  });

  start(nextTransport(null));
})();
