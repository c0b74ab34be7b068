"""The OpenAI wire format: request validation, responses, stream chunks and errors.

Requests follow `POST /v1/chat/completions` (the last user message is the question) and
`POST /v1/completions` (the prompt is the question). Supported fields: model, messages / prompt,
n, max_tokens (max_completion_tokens), temperature (0: greedy; omitted with n=1: greedy; otherwise
sampling with the server's temperature, top-k and top-p, see `kard serve --help`), stream; other
OpenAI fields (top_p, seed, user, ...) are accepted and ignored. One extension: `num_passages`.
Every response carries `kard`: the parsed answer, the vote, the passages read and stage timings.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from typing import Any, Mapping, Sequence

CHAT, COMPLETION = "chat", "completion"


class ApiError(Exception):
  """An error answered as {"error": {"message", "type", "param", "code"}} with `status`."""

  def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error",
               param: str | None = None, code: str | None = None):
    super().__init__(message)
    self.status, self.message, self.type, self.param, self.code = (status, message, type_, param,
                                                                    code)

  def body(self) -> dict[str, Any]:
    return {"error": {"message": self.message, "type": self.type, "param": self.param,
                      "code": self.code}}


@dataclasses.dataclass(frozen=True)
class Limits:
  """What the loaded service can do (validated against every request)."""
  model_names: tuple[str, ...]
  max_samples: int  # 0: greedy decoding only
  max_tokens: int
  max_passages: int


@dataclasses.dataclass(frozen=True)
class Request:
  kind: str  # CHAT or COMPLETION
  model: str
  question: str
  n: int
  max_tokens: int
  greedy: bool
  stream: bool
  num_passages: int | None


def _int(body: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
  value = body.get(name, default)
  if value is None:
    return default
  if isinstance(value, bool) or not isinstance(value, int):
    raise ApiError(400, f"{name} must be an integer", param=name, code="invalid_type")
  if not low <= value <= high:
    raise ApiError(400, f"{name} must be between {low} and {high}, got {value}", param=name,
                   code="out_of_range")
  return value


def _content_text(content: Any) -> str:
  """A message's content: a string, or a list of parts whose text parts are joined."""
  if isinstance(content, str):
    return content
  if isinstance(content, list):
    parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
    if parts:
      return " ".join(parts)
  raise ApiError(400, "message content must be a string or a list of text parts",
                 param="messages", code="invalid_type")


def parse_json(raw: bytes) -> dict[str, Any]:
  try:
    body = json.loads(raw.decode("utf-8") if raw else "")
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ApiError(400, f"the request body is not valid JSON ({e})", code="invalid_json") from None
  if not isinstance(body, dict):
    raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
  return body


def parse_request(kind: str, body: Mapping[str, Any], limits: Limits) -> Request:
  """A validated request, or ApiError (4xx) saying what is wrong."""
  model = body.get("model")
  if model is None:
    model = limits.model_names[0]
  if not isinstance(model, str) or model not in limits.model_names:
    raise ApiError(404, f"the model {model!r} does not exist; this server serves "
                   f"{', '.join(repr(m) for m in limits.model_names)}", param="model",
                   code="model_not_found")
  if kind == CHAT:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
      raise ApiError(400, "messages must be a non-empty list", param="messages",
                     code="missing_required_parameter" if messages is None else "invalid_type")
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
      raise ApiError(400, "messages holds no user message (the question)", param="messages",
                     code="invalid_value")
    question = _content_text(users[-1].get("content"))
  else:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
      prompt = prompt[0]
    if not isinstance(prompt, str):
      raise ApiError(400, "prompt must be a string (one question)", param="prompt",
                     code="missing_required_parameter" if prompt is None else "invalid_type")
    question = prompt
  if not question.strip():
    raise ApiError(400, "the question is empty", param="messages" if kind == CHAT else "prompt",
                   code="invalid_value")
  n = _int(body, "n", 1, 1, max(1, limits.max_samples))
  max_tokens = _int(body, "max_completion_tokens", limits.max_tokens, 1, limits.max_tokens)
  max_tokens = _int(body, "max_tokens", max_tokens, 1, limits.max_tokens)
  num_passages = body.get("num_passages")
  if num_passages is not None:
    num_passages = _int(body, "num_passages", 0, 0, limits.max_passages)
  temperature = body.get("temperature")
  if temperature is not None and (isinstance(temperature, bool) or
                                  not isinstance(temperature, (int, float))
                                  or not 0 <= temperature <= 2):
    raise ApiError(400, "temperature must be a number between 0 and 2", param="temperature",
                   code="out_of_range")
  greedy = temperature == 0 or (temperature is None and n == 1)
  if not greedy and not limits.max_samples:
    raise ApiError(400, "this server decodes greedily only (started with --max_samples 0); "
                   "send temperature 0 or leave it out", param="temperature",
                   code="sampling_disabled")
  stream = body.get("stream", False)
  if not isinstance(stream, bool):
    raise ApiError(400, "stream must be a boolean", param="stream", code="invalid_type")
  return Request(kind, model, question, n, max_tokens, greedy, stream, num_passages)


def new_id(kind: str) -> str:
  return ("chatcmpl-" if kind == CHAT else "cmpl-") + uuid.uuid4().hex[:24]


def response(req: Request, rid: str, created: int, choices: Sequence[tuple[str, str]],
             usage: Mapping[str, int], kard: Mapping[str, Any]) -> dict[str, Any]:
  """The whole (non-streamed) response; `choices` are (text, finish_reason)."""
  if req.kind == CHAT:
    rows = [{"index": i, "message": {"role": "assistant", "content": text},
             "finish_reason": reason, "logprobs": None}
            for i, (text, reason) in enumerate(choices)]
    obj = "chat.completion"
  else:
    rows = [{"index": i, "text": text, "finish_reason": reason, "logprobs": None}
            for i, (text, reason) in enumerate(choices)]
    obj = "text_completion"
  return {"id": rid, "object": obj, "created": created, "model": req.model, "choices": rows,
          "usage": dict(usage), "kard": dict(kard)}


def chunk(req: Request, rid: str, created: int, index: int, text: str | None,
          finish_reason: str | None = None, *, role: bool = False,
          kard: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """One streamed chunk: a piece of choice `index`'s text, or its end (`finish_reason`)."""
  if req.kind == CHAT:
    delta: dict[str, Any] = {}
    if role:
      delta["role"] = "assistant"
    if text is not None:
      delta["content"] = text
    row = {"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
    obj = "chat.completion.chunk"
  else:
    row = {"index": index, "text": text or "", "finish_reason": finish_reason, "logprobs": None}
    obj = "text_completion"
  out = {"id": rid, "object": obj, "created": created, "model": req.model, "choices": [row]}
  if kard is not None:
    out["kard"] = dict(kard)
  return out


def text_pieces(full: str, prefixes: Sequence[str]) -> list[str]:
  """Splits `full` into stream deltas at each token prefix's text that `full` starts with, so the
  pieces always concatenate to exactly `full`."""
  pieces, emitted = [], 0
  for prefix in prefixes:
    if len(prefix) > emitted and full.startswith(prefix):
      pieces.append(full[emitted:len(prefix)])
      emitted = len(prefix)
  if emitted < len(full):
    pieces.append(full[emitted:])
  return pieces


def models_list(names: Sequence[str], created: int) -> dict[str, Any]:
  return {"object": "list", "data": [{"id": name, "object": "model", "created": created,
                                      "owned_by": "kard_jax"} for name in names]}


def now() -> int:
  return int(time.time())
