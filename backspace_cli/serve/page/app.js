// backspace serve's chat page: each reply comes over the edit stream and is drawn token by token.
// Model text only ever enters the page as textContent, never as HTML.
"use strict";

const FLASH_MS = 700; // how long a deleted piece shows, struck through, outside trace mode
const history = []; // the conversation's final texts, sent whole each turn (the server reuses its cache)
let tookBack = ""; // the server's wording for a reply the model deleted entirely
const $ = (id) => document.getElementById(id);

function element(tag, className, text) {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function headers() {
  const result = { "Content-Type": "application/json" };
  if ($("key").value) result.Authorization = "Bearer " + $("key").value;
  return result;
}

// The events of a server-sent event stream, as parsed JSON, up to [DONE].
async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const data = buffer.slice(0, end).replace(/^data: /, "");
      buffer = buffer.slice(end + 2);
      if (data === "[DONE]") return;
      yield JSON.parse(data);
    }
  }
}

function statsLine(done, usage) {
  const cached = usage ? `, ${usage.prompt_tokens_details.cached_tokens} cached` : "";
  return `prompt ${done.prompt_tokens} tok${cached} · reply ${done.tokens} tok, ${done.deletes} deletes` +
    ` · ${done.generated} generated · ${done.gen_tps.toFixed(1)} t/s · ${done.finish_reason}`;
}

async function ask(message) {
  const log = $("log");
  log.append(element("div", "user", message));
  const reply = element("div", "reply");
  const stats = element("div", "stats");
  log.append(reply, stats);
  const response = await fetch("/v1/chat/completions", {
    method: "POST",
    headers: headers(),
    body: JSON.stringify({
      messages: [...history, { role: "user", content: message }],
      stream: true, edit_stream: true, stream_options: { include_usage: true },
    }),
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({ error: { message: response.statusText } }));
    stats.replaceWith(element("div", "error", body.error.message));
    if (response.status === 401) $("auth").hidden = false;
    return;
  }
  const kept = []; // the spans of the tokens still in the text, oldest first
  let done = null;
  for await (const chunk of events(response)) {
    if (chunk.error) { stats.replaceWith(element("div", "error", chunk.error.message)); return; }
    if (chunk.usage && done) stats.textContent = statsLine(done, chunk.usage);
    const edit = chunk.choices.length ? chunk.choices[0].backspace : undefined;
    if (!edit) continue;
    if (edit.type === "token") {
      const piece = element("span", "piece", edit.text);
      kept.push(piece);
      reply.append(piece);
    } else if (edit.type === "delete") {
      const piece = kept.pop();
      piece.classList.add("deleted", "flash");
      setTimeout(() => piece.classList.remove("flash"), FLASH_MS);
    } else if (edit.type === "done") {
      done = edit;
      stats.textContent = statsLine(done);
    }
  }
  if (done && done.text === "" && done.deletes > 0) reply.after(element("div", "note", tookBack));
  if (done) {
    history.push({ role: "user", content: message }, { role: "assistant", content: done.text });
    reply.dataset.done = "";
  }
}

$("trace").addEventListener("change", (event) => $("log").classList.toggle("trace", event.target.checked));
$("clear").addEventListener("click", () => { history.length = 0; $("log").replaceChildren(); });
$("ask").addEventListener("submit", async (event) => {
  event.preventDefault();
  const message = $("message").value.trim();
  if (!message) return;
  $("message").value = "";
  $("send").disabled = true;
  try { await ask(message); } finally { $("send").disabled = false; $("message").focus(); }
});
// The model's name, and what it says about itself: a description, and examples that fill the input when clicked.
fetch("/page/about").then((response) => response.json()).then((about) => {
  $("model").textContent = about.model;
  tookBack = about.took_back;
  $("description").textContent = about.description;
  for (const example of about.examples) {
    const button = element("button", "example", example);
    button.type = "button";
    button.addEventListener("click", () => { $("message").value = example; $("message").focus(); });
    $("examples").append(button);
  }
  $("examples").hidden = !about.examples.length;
  $("about").hidden = !about.description && !about.examples.length;
  if (about.examples.length) $("message").placeholder = "Ask something, for example: " + about.examples[0];
});
