// "Walk the call": plays a flow's rendered clips in order and sends each key to the server, which walks the
// flow with campaigns.callflow.press (the same walk as a real call) and answers with what to play next.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const list = document.getElementById("id_contact_list");
  const contact = document.getElementById("id_contact");
  if (list && contact) {
    // Another list's contacts are not offered yet: blank means that list's first contact.
    list.addEventListener("change", () => { contact.value = ""; contact.disabled = true; });
  }

  const configNode = document.getElementById("walk-config");
  if (!configNode) return;
  const config = JSON.parse(configNode.textContent);
  const csrf = document.querySelector("#walk-form input[name=csrfmiddlewaretoken]").value;
  const heard = document.getElementById("walk-heard");
  const pathNode = document.getElementById("walk-path");
  const menuNode = document.getElementById("walk-menu");
  const actionNode = document.getElementById("walk-action");
  const errorNode = document.getElementById("walk-error");
  const refuse = document.getElementById("walk-refuse");
  const keys = [...document.querySelectorAll("#walk-keypad .walk-key")];
  // The page's words, in the staff member's language (data-text-* on #walk; English where missing).
  const words = document.getElementById("walk").dataset;
  const text = {
    notYet: words.textNotYet || "not yet",
    notRendered: words.textNotRendered || "(not rendered: {problem})",
    inMenu: words.textInMenu || "(in {menu})",
    noSuchClip: words.textNoSuchClip || "no such clip",
    serverAnswered: words.textServerAnswered || "the server answered {status}",
  };
  let state = null;
  let queue = [];

  function label(path) {
    return config.labels[path] || path;
  }

  function playNext() {
    const audio = queue.shift();
    if (!audio) return;
    audio.addEventListener("ended", playNext, { once: true });
    // A browser may refuse to play before the page is clicked: the clip keeps its own play button.
    audio.play().catch(() => playNext());
  }

  function hear(names) {
    queue = [];
    for (const name of names) {
      const clip = config.clips[name] || { text: "", url: "", problem: text.noSuchClip };
      const item = document.createElement("li");
      item.className = "walk-clip";
      item.dataset.clip = name;
      const title = document.createElement("span");
      title.className = "walk-clip-name";
      title.textContent = `${name}: `;
      const said = document.createElement("span");
      said.className = "walk-clip-text";
      said.textContent = clip.text || "";
      item.append(title, said);
      if (clip.url) {
        const audio = document.createElement("audio");
        audio.controls = true;
        audio.preload = "auto";
        audio.src = clip.url;
        item.append(audio);
        queue.push(audio);
      } else {
        const problem = document.createElement("span");
        problem.className = "walk-clip-problem";
        problem.textContent = ` ${text.notRendered.replace("{problem}", () => clip.problem)}`;
        item.append(problem);
      }
      heard.append(item);
    }
    playNext();
  }

  function show(step) {
    state = step;
    pathNode.textContent = step.path.map(label).join(" → ");
    menuNode.textContent = step.gather === null ? "-" : label(step.gather);
    let ending = text.notYet;
    if (step.action) {
      ending = step.ending;
      const slot = config.clips[step.node] && config.clips[step.node].said;
      if (step.action === "rescheduled" && slot) ending += `: ${slot}`;
      if (step.transfer_to) ending += `: ${step.transfer_to}`;
      if (step.detail && step.action === "no_input") ending += ` ${text.inMenu.replace("{menu}", () => label(step.detail))}`;
    }
    actionNode.textContent = ending;
    actionNode.dataset.action = step.action;
    for (const key of keys) key.disabled = step.gather === null;
    refuse.hidden = step.action !== "transferred";
    hear(step.play);
  }

  async function press(key) {
    await send({ menu: state.gather, prompts: state.prompts, key, path: state.path });
  }

  async function send(body) {
    errorNode.hidden = true;
    for (const button of keys) button.disabled = true;
    const response = await fetch(config.press_url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      credentials: "same-origin",
      body: JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({ error: text.serverAnswered.replace("{status}", () => response.status) }));
    if (!response.ok) {
      errorNode.textContent = answer.error;
      errorNode.hidden = false;
      for (const button of keys) button.disabled = state.gather === null;
      return;
    }
    for (const audio of heard.querySelectorAll("audio")) audio.pause();
    show(answer);
  }

  for (const button of keys) button.addEventListener("click", () => press(button.dataset.key));
  refuse.addEventListener("click", () => send({ refused: state.node, path: state.path }));
  document.getElementById("walk-restart").addEventListener("click", () => {
    for (const audio of heard.querySelectorAll("audio")) audio.pause();
    heard.replaceChildren();
    show(config.start);
  });
  show(config.start);
});
