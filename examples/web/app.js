// The demo page: no framework, no build. Each stream is read with an EventSource; what it
// has shown so far is kept in sessionStorage with the last offset, so a reload shows it
// again at once and resumes at the next offset (?lastEventId=). After a dropped connection
// the EventSource itself resumes, sending the Last-Event-ID header.
"use strict";

const $ = (id) => document.getElementById(id);
const now = () => performance.timeOrigin + performance.now();

/** What the page saw, for the end-to-end test (and the curious, in the console). */
const demo = (window.demo = {
  /** Offsets received by this page load, per stream, in arrival order. */
  offsets: { tokens: [], progress: [] },
  /** The offset each stream resumed after (-1: from the start). */
  resumedAfter: {},
  /** Out-of-order or duplicate offsets: must stay empty. */
  anomalies: [],
  /** write → screen, in ms, for each token shown by this page load. */
  latencies: [],
});

/** A run is on the page (its streams are open). */
let shown = false;

/**
 * Follows one stream. `state` is rebuilt by `reduce(state, value)` for each entry, and
 * `render(state)` shows it; both survive a reload through sessionStorage.
 */
function follow(workflowId, key, { initial, reduce, render, onClose }) {
  const stored = JSON.parse(sessionStorage.getItem(`pgtide:${workflowId}:${key}`) ?? "null");
  let last = stored?.last ?? -1;
  let state = stored?.state ?? initial;
  let closed = stored?.closed ?? false;
  demo.resumedAfter[key] = last;
  render(state, closed);
  if (closed) return onClose(state);

  const query = last >= 0 ? `?lastEventId=${last}` : "";
  const source = new EventSource(`/api/streams/${encodeURIComponent(workflowId)}/${encodeURIComponent(key)}${query}`);
  const save = () => sessionStorage.setItem(`pgtide:${workflowId}:${key}`, JSON.stringify({ last, state, closed }));
  source.onmessage = (event) => {
    const offset = Number(event.lastEventId);
    demo.offsets[key].push(offset);
    if (offset !== last + 1) {
      demo.anomalies.push({ key, expected: last + 1, got: offset });
      if (offset <= last) return; // never show a value twice
    }
    last = offset;
    state = reduce(state, JSON.parse(event.data));
    render(state, false);
    save();
  };
  source.addEventListener("close", () => {
    source.close(); // or the EventSource would reconnect, and be told again that it is closed
    closed = true;
    save();
    render(state, true);
    onClose(state);
  });
  source.onerror = () => {
    if (!closed) $(`${key === "tokens" ? "answer" : "job"}-status`).textContent = "connection lost; resuming…";
  };
}

function show(run) {
  shown = true;
  $("prompt").value = sessionStorage.getItem(`pgtide:prompt:${run}`) ?? "";
  follow(`demo-${run}-answer`, "tokens", {
    initial: "",
    reduce: (text, token) => {
      // Measured after the text is on the page (the render below runs in the same task).
      queueMicrotask(() => demo.latencies.push(now() - token.at));
      return text + token.text;
    },
    render: (text, closed) => {
      $("answer").textContent = text;
      $("answer").dataset.state = closed ? "done" : "streaming";
      $("answer-status").textContent = closed ? "Done." : "Streaming…";
    },
    onClose: () => showLatency(),
  });
  follow(`demo-${run}-job`, "progress", {
    initial: {},
    reduce: (bars, p) => ({ ...bars, [p.label]: p }),
    render: (bars, closed) => {
      for (const { label, done, total } of Object.values(bars)) {
        const bar = $(`bar-${label}`);
        if (!bar) continue;
        bar.max = total || 1;
        bar.value = total ? done : 1;
        $(`pct-${label}`).textContent = `${Math.floor((total ? done / total : 1) * 100)}%`;
      }
      $("job").dataset.state = closed ? "done" : "running";
      $("job-status").textContent = closed ? "Job finished." : "Running…";
    },
    onClose: () => {},
  });
}

function showLatency() {
  const sorted = [...demo.latencies].sort((a, b) => a - b);
  if (sorted.length === 0) return;
  const p50 = sorted[Math.floor((sorted.length - 1) / 2)];
  $("answer-status").textContent = `Done. writeStream → this page: p50 ${p50.toFixed(1)} ms over ${sorted.length} tokens.`;
}

$("ask").addEventListener("submit", async (event) => {
  event.preventDefault();
  const prompt = $("prompt").value;
  const response = await fetch("/api/runs", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt }),
  });
  if (!response.ok) {
    $("answer-status").textContent = (await response.json()).error;
    return;
  }
  const { run } = await response.json();
  sessionStorage.setItem(`pgtide:prompt:${run}`, prompt);
  // A reload, or this address in another tab, follows the same run.
  if (shown) {
    location.hash = `run=${run}`; // the page reloads (hashchange) to drop the previous run's streams
  } else {
    history.pushState(null, "", `#run=${run}`);
    show(run);
  }
});


function fromHash() {
  const run = /^#run=([0-9a-f]+)$/.exec(location.hash)?.[1];
  if (run) show(run);
}
window.addEventListener("hashchange", () => location.reload());
fromHash();
