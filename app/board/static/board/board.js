// The board's client: one WebSocket for messages, one per job for progress. Reconnects with
// exponential backoff and jitter and resumes from the last message id it has shown, so every
// message appears exactly once, in order, even across disconnects.
"use strict";

(function () {
  const wsBase = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
  const list = document.getElementById("messages");
  const indicator = document.getElementById("connection");
  let lastId = Number(list.dataset.lastId || 0);

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

  function connectBoard(attempt) {
    const socket = new WebSocket(wsBase + "/ws/board/?after=" + lastId);
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "message") showMessage(frame);
      else if (frame.type === "ready") {
        attempt = 0;
        setIndicator("live", "live");
      } else if (frame.type === "error") document.getElementById("post-error").textContent = frame.error;
    };
    socket.onclose = (event) => {
      // 4012: the host is drained (a rolling deploy) and the load balancer already sends new
      // sockets elsewhere: come back at once, spread over 0.25 s rather than backing off.
      const drained = event.code === DRAINED;
      const delay = drained ? Math.random() * 250 : backoff(attempt);
      setIndicator("reconnecting", "reconnecting…");
      setTimeout(() => connectBoard(drained ? 0 : attempt + 1), delay);
    };
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

  function watchJob(job, bar, label, attempt) {
    const socket = new WebSocket(wsBase + "/ws/jobs/" + job.id + "/");
    let finished = false;
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type !== "job.progress") return;
      attempt = 0;
      bar.max = frame.total;
      bar.value = frame.done;
      label.textContent = "Job " + frame.id + ": " + frame.state + " (" + frame.done + "/" + frame.total + ")";
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

  connectBoard(0);
})();
