// The chat page: join a room over /ws/chat/<room>/, show its archive, then every message sent to it.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const list = document.getElementById("messages");
  const say = document.getElementById("say");
  let socket = null;

  function show(text) {
    const item = document.createElement("li");
    item.textContent = text;
    list.append(item);
  }

  document.getElementById("join").addEventListener("submit", async (event) => {
    event.preventDefault();
    const room = new FormData(event.target).get("room");
    if (socket) socket.close();
    list.replaceChildren();
    const archived = await (await fetch(`/rooms/${encodeURIComponent(room)}/archive`)).json();
    archived.messages.forEach((message) => show(message.text));
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/ws/chat/${encodeURIComponent(room)}/`);
    socket.onmessage = (frame) => {
      const data = JSON.parse(frame.data);
      if (data.type === "message") show(data.text);
      if (data.type === "error") show(`(refused: ${data.error})`);
    };
    socket.onopen = () => { say.hidden = false; };
    socket.onclose = () => { say.hidden = true; };
  });

  say.addEventListener("submit", (event) => {
    event.preventDefault();
    const input = event.target.elements.text;
    socket.send(JSON.stringify({ text: input.value }));
    input.value = "";
  });
});
