"""The HTTP service: routes, JSON and server-sent events, client cancellation.

Standard library only (`http.server.ThreadingHTTPServer`): one thread per connection prepares
its request (retrieval, prompt), hands the input to the `Batcher` and waits; while it waits it
watches its socket, and a client that hangs up cancels its job (dropped before decoding, so its
slot in the next batch goes to another request). Streaming (`stream: true`) sends the decoded
text as OpenAI chunks, one per token, after the batch that decoded it finishes (the decoder is
one compiled loop; chunks concatenate to exactly the non-streamed text).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kard_jax.serve import api
from kard_jax.serve.batcher import Batcher
from kard_jax.serve.engine import GREEDY, SAMPLE, Engine, RequestError
from kard_jax.serve.page import PAGE

log = logging.getLogger("kard.serve")
MAX_BODY = 1 << 20


class Service:
  """The engine behind a batcher, answering validated requests."""

  def __init__(self, engine: Engine, *, batching: bool = True, window_ms: float = 10.0):
    self.engine = engine
    self.batching = batching
    self.batcher = Batcher(engine.decode, max_batch=engine.max_batch if batching else 1,
                           window_s=window_ms / 1e3 if batching else 0.0)
    self.names = (engine.model_name, "kard")
    self.limits = api.Limits(self.names, engine.config.max_samples, engine.max_new_tokens,
                             max(16, engine.config.num_passages))
    self.created = api.now()
    self.counts = {"requests": 0, "errors": 0, "cancelled": 0}
    self._lock = threading.Lock()

  def count(self, name: str) -> None:
    with self._lock:
      self.counts[name] += 1

  def health(self) -> dict[str, Any]:
    e = self.engine
    return {"status": "ready" if e.compiled else "compiling", "model": e.model_name,
            "compile_seconds": round(e.compile_seconds, 3), "recompilations": e.recompilations,
            "batching": self.batching, "batch_buckets": list(e.batch_buckets),
            "length_buckets": list(e.length_buckets), "pending": self.batcher.pending(),
            **self.counts, **self.batcher.stats}

  def run(self, req: api.Request, cancelled) -> tuple[dict[str, Any], list[tuple[str, list[int],
                                                                                 str]]]:
    """(kard record, [(text, token ids, finish reason)] per choice); None when cancelled."""
    start = time.perf_counter()
    try:
      prepared = self.engine.prepare(req.question, req.num_passages)
    except RequestError as e:
      raise api.ApiError(400, str(e), param=e.param, code=e.code) from None
    job = self.batcher.submit(GREEDY if req.greedy else SAMPLE, prepared.tokens)
    while not job.done.wait(0.02):
      if cancelled():
        job.cancel()
        return None
    if job.cancelled and job.result is None:
      return None
    if job.error is not None:
      raise job.error
    choices = self.engine.texts(job.result, 1 if req.greedy else req.n, req.max_tokens)
    if req.greedy and req.n > 1:
      choices = choices * req.n
    scores = job.result.scores.tolist()[:len(choices)] if not req.greedy else (
        job.result.scores.tolist()[:1] * len(choices))
    kard = self.engine.answer(prepared, [c[0] for c in choices], scores)
    timings = dict(prepared.timings)
    timings.update({"queue_ms": 1e3 * (job.started - job.submitted),
                    "decode_ms": 1e3 * (job.finished - job.started),
                    "total_ms": 1e3 * (time.perf_counter() - start)})
    kard.update({"question": prepared.question,
                 "choices": [{"label": c.label, "text": c.text} for c in prepared.choices],
                 "passages": prepared.passages, "input": prepared.inputs,
                 "decoding": "greedy" if req.greedy else
                 dataclasses.asdict(self.engine.decode_configs[SAMPLE]),
                 "batch_size": job.batch_size,
                 "timings": {k: round(v, 2) for k, v in timings.items()},
                 "prompt_tokens": int(len(prepared.tokens))})
    return kard, choices


def _client_gone(sock: socket.socket) -> bool:
  """True when the peer closed its side (readable with nothing to read)."""
  try:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
      return False
    return sock.recv(1, socket.MSG_PEEK) == b""
  except (OSError, ValueError):
    return True


class Handler(BaseHTTPRequestHandler):
  protocol_version = "HTTP/1.1"
  service: Service  # set on the subclass made by `make_server`
  server_version = "kard-serve"

  def log_message(self, format: str, *args: Any) -> None:  # quiet console: debug level
    log.debug("%s " + format, self.address_string(), *args)

  def _send_json(self, status: int, obj: Any) -> None:
    data = json.dumps(obj).encode("utf-8")
    self.send_response(status)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    self.wfile.write(data)

  def _error(self, e: api.ApiError) -> None:
    self.service.count("errors")
    log.info("%d %s: %s", e.status, self.path, e.message)
    self._send_json(e.status, e.body())

  def do_GET(self) -> None:  # noqa: N802
    path = self.path.split("?")[0]
    if path == "/healthz":
      health = self.service.health()
      self._send_json(200 if health["status"] == "ready" else 503, health)
    elif path == "/v1/models":
      self._send_json(200, api.models_list(self.service.names, self.service.created))
    elif path == "/":
      data = PAGE.encode("utf-8")
      self.send_response(200)
      self.send_header("Content-Type", "text/html; charset=utf-8")
      self.send_header("Content-Length", str(len(data)))
      self.end_headers()
      self.wfile.write(data)
    else:
      self._error(api.ApiError(404, f"no route {path}", code="not_found"))

  def do_POST(self) -> None:  # noqa: N802
    path = self.path.split("?")[0]
    length = int(self.headers.get("Content-Length") or 0)
    if length > MAX_BODY:
      self.close_connection = True
      self._error(api.ApiError(413, f"request body over {MAX_BODY} bytes", code="too_large"))
      return
    raw = self.rfile.read(length) if length else b""
    kinds = {"/v1/chat/completions": api.CHAT, "/v1/completions": api.COMPLETION}
    if path not in kinds:
      self._error(api.ApiError(404, f"no route {path}", code="not_found"))
      return
    try:
      if not self.service.engine.compiled:
        raise api.ApiError(503, "the model is still compiling; see /healthz",
                           type_="server_error", code="not_ready")
      req = api.parse_request(kinds[path], api.parse_json(raw), self.service.limits)
      self.service.count("requests")
      outcome = self.service.run(req, lambda: _client_gone(self.connection))
    except api.ApiError as e:
      self._error(e)
      return
    except Exception as e:  # pylint: disable=broad-except
      log.exception("request failed")
      self._error(api.ApiError(500, f"internal error: {type(e).__name__}: {e}",
                               type_="server_error"))
      return
    if outcome is None:
      self.service.count("cancelled")
      log.info("request cancelled by the client")
      self.close_connection = True
      return
    kard, choices = outcome
    rid, created = api.new_id(req.kind), api.now()
    completion = sum(len(c[1]) for c in choices)
    usage = {"prompt_tokens": kard["prompt_tokens"], "completion_tokens": completion,
             "total_tokens": kard["prompt_tokens"] + completion}
    try:
      if not req.stream:
        self._send_json(200, api.response(req, rid, created, [(t, r) for t, _, r in choices],
                                          usage, kard))
      else:
        self._stream(req, rid, created, choices, kard)
    except (BrokenPipeError, ConnectionResetError):
      self.service.count("cancelled")
      self.close_connection = True

  def _stream(self, req, rid, created, choices, kard) -> None:
    self.send_response(200)
    self.send_header("Content-Type", "text/event-stream")
    self.send_header("Cache-Control", "no-cache")
    self.send_header("Connection", "close")
    self.end_headers()
    self.close_connection = True

    def send(obj: Any) -> None:
      self.wfile.write(b"data: " + json.dumps(obj).encode("utf-8") + b"\n\n")
      self.wfile.flush()

    engine = self.service.engine
    for i, (text, tokens, reason) in enumerate(choices):
      send(api.chunk(req, rid, created, i, "" if req.kind == api.CHAT else None, role=True))
      prefixes = [engine.decode_piece(tokens[:j]) for j in range(1, len(tokens) + 1)]
      for piece in api.text_pieces(text, prefixes):
        send(api.chunk(req, rid, created, i, piece))
      last = i == len(choices) - 1
      send(api.chunk(req, rid, created, i, None, reason, kard=kard if last else None))
    self.wfile.write(b"data: [DONE]\n\n")
    self.wfile.flush()


def make_server(service: Service, host: str, port: int) -> ThreadingHTTPServer:
  """A threading HTTP server bound to (host, port) (port 0: any free port)."""
  handler = type("KardHandler", (Handler,), {"service": service})
  # A listen backlog for many clients connecting at once (the default, 5, resets connections).
  server_cls = type("KardHTTPServer", (ThreadingHTTPServer,), {"request_queue_size": 256})
  server = server_cls((host, port), handler)
  server.daemon_threads = True
  return server


class Running:
  """A server started in a background thread (tests, the benchmark); `stop()` shuts it down."""

  def __init__(self, service: Service, host: str = "127.0.0.1", port: int = 0):
    self.service = service
    self.httpd = make_server(service, host, port)
    self.port = self.httpd.server_address[1]
    self.url = f"http://{host}:{self.port}"
    self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
    self._thread.start()

  def stop(self) -> None:
    self.httpd.shutdown()
    self.httpd.server_close()
    self.service.batcher.stop()
