# Helpers sourced by the setup scripts.

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# make_env DIR LABEL PIP_ARGS... : create DIR as a venv and pip install PIP_ARGS into it, unless a stamp
# file shows the same arguments and pyproject.toml were installed already. If MAKE_ENV_POST names a function,
# it runs after the install and before the stamp, so an environment it fails on is installed again next time.
make_env() {
  local dir=$1 label=$2; shift 2
  local stamp="$dir/.vs-sonar-stamp"
  local want
  want=$(printf '%s\n' "$@" | cat - pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "setup: $label environment $dir is up to date"; return 0
  fi
  echo "setup: installing the $label environment in $dir"
  [ -x "$dir/bin/python" ] || "${PYTHON:-python3}" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --upgrade pip
  "$dir/bin/python" -m pip install -q "$@"
  if [ -n "${MAKE_ENV_POST:-}" ]; then "$MAKE_ENV_POST" "$dir"; fi
  echo "$want" > "$stamp"
}
