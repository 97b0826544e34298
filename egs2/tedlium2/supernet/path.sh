# Activates the project's virtual environment (made by tools/setup.sh).
_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
if [ -f "$_root/.venv/bin/activate" ]; then
  . "$_root/.venv/bin/activate"
else
  echo "path.sh: $_root/.venv is missing: run tools/setup.sh first" >&2
  return 1 2>/dev/null || exit 1
fi
export PYTHONIOENCODING=UTF-8 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
unset _root
