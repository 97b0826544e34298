#!/usr/bin/env bash
# Usage: tools/setup.sh
#
# Creates .venv in the repository root with the pinned stack and this package
# (editable), and installs Debian's espeak-ng and sox when they are missing (and,
# optionally, slurm-wlm and munge for the Slurm backend's test).
# Idempotent: on a ready machine it returns in seconds (a stamp file records
# the requirement set that was installed).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python=${PYTHON:-python3.11}
reqs="torch==2.9.1 torchaudio==2.9.1 espnet==202511 sentencepiece==0.2.0 kaldiio==2.18.1 soundfile==0.14.0 jiwer==4.0.0 tensorboard==2.21.0 matplotlib==3.11.2 onnx==1.23.2 onnxruntime==1.32.0 pytest==9.2.0 pytest-xdist==3.8.0"
uv_req="uv==0.9.9"
stamp=.venv/.espnet_supernet_stamp

need_apt=()
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
command -v sox >/dev/null 2>&1 || need_apt+=(sox)
[ -d /usr/share/games/fortunes ] || need_apt+=(fortunes)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: cannot install ${need_apt[*]} (need root and apt-get)." >&2
    echo "       Install them yourself, e.g. 'sudo apt-get install ${need_apt[*]}', then re-run." >&2
    exit 1
  fi
fi

# Optional: Debian's Slurm and munge, for the test that runs the recipe's Slurm backend
# against a real single-node cluster (it skips, saying why, without them).
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing slurm-wlm and munge (optional, for the Slurm test)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 \
      || echo "setup: could not install slurm-wlm/munge: the Slurm test will skip" >&2
  else
    echo "setup: no slurm-wlm/munge (need root and apt-get): the Slurm test will skip" >&2
  fi
fi

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$reqs" ]; then
  echo "setup: .venv is ready ($(.venv/bin/python --version))"
  exit 0
fi

if ! command -v "$python" >/dev/null 2>&1; then
  echo "setup: $python not found; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
# pip 24+ refuses espnet's optional ci_sdr dependency (a direct URL); 23.2 accepts it.
.venv/bin/pip install -q "pip==23.2.1"
# uv installs the ~6 GB stack in about a minute, and in ~10 s from its cache
# (~/.cache/uv) when the stack was installed before on this machine (pip: ~5 minutes
# every time). Set SETUP_INSTALLER=pip to use pip only; pip is also the fallback.
installer=${SETUP_INSTALLER:-uv}
if [ "$installer" = uv ] && .venv/bin/pip install -q "$uv_req"; then
  echo "setup: installing the pinned stack into .venv with uv (about a minute the first time)"
  if ! .venv/bin/uv pip install -q --python .venv/bin/python $reqs; then
    echo "setup: uv failed; falling back to pip" >&2
    installer=pip
  fi
else
  installer=pip
fi
if [ "$installer" = pip ]; then
  echo "setup: installing the pinned stack into .venv with pip (about 5 minutes)"
  .venv/bin/pip install -q $reqs
fi
.venv/bin/pip install -q --no-deps -e .
echo "$reqs" > "$stamp"
echo "setup: done"
