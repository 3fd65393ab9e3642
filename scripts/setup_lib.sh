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

# project EXTRAS... : the pip argument that installs this project (editable) with those extras, and with the
# `ray` extra too under setup.sh --ray (WITH_RAY=1). Without --ray the argument is what it always was, so the
# environment's stamp, and with it the environment, stay as they are.
project() {
  local extras=("$@")
  if [ "${WITH_RAY:-0}" = 1 ]; then extras+=(ray); fi
  if [ ${#extras[@]} -eq 0 ]; then echo "."; return; fi
  local IFS=,
  echo ".[${extras[*]}]"
}

# check_ray DIR... : each environment has the Ray version pyproject.toml pins (a worker whose Ray differs from
# the driver's cannot join it). Reads package metadata only: cheap enough for every run.
check_ray() {
  local want have dir
  want=$(grep -oE 'ray\[data\]==[0-9.]+' pyproject.toml | head -1 | cut -d= -f3)
  for dir in "$@"; do
    have=$("$dir/bin/python" -c 'import importlib.metadata as m; print(m.version("ray"))' 2>/dev/null || true)
    if [ "$have" != "$want" ]; then
      echo "setup: $dir has ray ${have:-(none)}, not $want; remove its .vs-sonar-stamp and run setup.sh --ray" >&2
      return 1
    fi
  done
  echo "setup: ray $want in $*"
}
