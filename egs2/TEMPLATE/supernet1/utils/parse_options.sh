#!/usr/bin/env bash
# Sourced by stage scripts: turns "--name value" arguments into shell variables.
# Only variables that already exist may be set (a typo is an error, listing the caller's
# --help); "--name=value" works too. Stops at the first positional argument.
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) echo "${help_message:-no help}"; exit 0 ;;
    --*=*) _name=${1%%=*}; _value=${1#*=}; shift ;;
    --*) _name=$1; [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }
         _value=$2; shift 2 ;;
    *) break ;;
  esac
  _name=${_name#--}; _name=${_name//-/_}
  if ! declare -p "$_name" >/dev/null 2>&1; then
    echo "$0: unknown option --$_name (see $0 --help)" >&2; exit 1
  fi
  printf -v "$_name" '%s' "$_value"
done
unset _name _value
