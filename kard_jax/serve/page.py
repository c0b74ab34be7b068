"""The page at GET /: type a question, see the answer, the rationale and the passages read."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kard serve</title>
<style>
body{font-family:sans-serif;max-width:52em;margin:2em auto;padding:0 1em;line-height:1.4}
textarea{width:100%;height:6em}#answer{font-size:1.3em;font-weight:bold}
li{margin:.4em 0}.meta{color:#666;font-size:.85em}
</style></head><body>
<h1>kard serve <span class="meta" id="model"></span></h1>
<p>A question, with its choices as <code>(A) ... (B) ...</code> or free text:</p>
<textarea id="question">Question: ... Answer Choices: (A) ... (B) ...</textarea>
<p><button id="ask">Ask</button> <span id="status" class="meta"></span></p>
<h2>Answer</h2><p id="answer"></p>
<h2>Rationale</h2><p id="rationale"></p>
<h2>Passages</h2><ol id="passages"></ol>
<script>
const $ = (id) => document.getElementById(id);
fetch("/v1/models").then(r => r.json()).then(m => { $("model").textContent = m.data[0].id; });
$("ask").onclick = async () => {
  $("status").textContent = "thinking...";
  const r = await fetch("/v1/chat/completions", {method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({messages: [{role: "user", content: $("question").value}]})});
  const out = await r.json();
  if (!r.ok) { $("status").textContent = out.error.message; return; }
  const k = out.kard;
  $("answer").textContent = k.answer === null ? "(no choice named)" :
      k.answer + (k.answer_text ? " (" + k.answer_text + ")" : "");
  $("rationale").textContent = out.choices[0].message.content;
  $("passages").replaceChildren(...k.passages.map(p => {
    const li = document.createElement("li");
    li.className = "passage";
    li.textContent = p.title + ": " + p.text + " [" + p.score + "]";
    return li; }));
  $("status").textContent = Math.round(k.timings.total_ms) + " ms";
};
</script></body></html>
"""
