# bash completion for snapmig(1)                         -*- shell-script -*-
#
# Commands come from `snapmig help`, each command's options from
# `snapmig COMMAND --help-all`, so that the completion never lists an option
# the installed binary does not take.  Both are asked once per shell.

# _snapmig_commands SNAPMIG: the commands `snapmig help` lists.
_snapmig_commands ()
{
  if [[ -z ${_snapmig_cmds-} ]]; then
    _snapmig_cmds=$("$1" help 2>/dev/null |
      awk '/^Commands:/ {on = 1; next} on && /^  [a-z]/ {print $1}')
  fi
  printf '%s\n' "$_snapmig_cmds"
}

# _snapmig_options SNAPMIG COMMAND: COMMAND's long options, one a line, with
# a trailing "=" on those that take a value.
_snapmig_options ()
{
  local var=_snapmig_opts_${2//-/_}
  if [[ -z ${!var-} ]]; then
    printf -v "$var" '%s' "$("$1" "$2" --help-all 2>/dev/null |
      grep -oE '^  (-[a-zA-Z], )?--[a-z][a-z0-9-]*=?' |
      grep -oE -- '--[a-z][a-z0-9-]*=?' |
      grep -vxE -- '--help(-all|-[a-z]+)?')"
  fi
  printf '%s\n' "${!var}"
}

_snapmig ()
{
  local cur=${COMP_WORDS[COMP_CWORD]} prev= snapmig=${COMP_WORDS[0]}
  local cmd= i opts
  (( COMP_CWORD > 0 )) && prev=${COMP_WORDS[COMP_CWORD - 1]}
  COMPREPLY=()

  # The command: the first word after snapmig that is not an option.
  for ((i = 1; i < COMP_CWORD; i++)); do
    if [[ ${COMP_WORDS[i]} != -* ]]; then cmd=${COMP_WORDS[i]}; break; fi
  done

  if [[ -z $cmd ]]; then
    if [[ $cur == -* ]]; then
      COMPREPLY=($(compgen -W '--help --version' -- "$cur"))
    else
      COMPREPLY=($(compgen -W "help $(_snapmig_commands "$snapmig")" -- "$cur"))
    fi
    return 0
  fi
  if [[ $cmd == help ]]; then
    (( COMP_CWORD == i + 1 )) &&
      COMPREPLY=($(compgen -W "$(_snapmig_commands "$snapmig")" -- "$cur"))
    return 0
  fi

  opts=$(_snapmig_options "$snapmig" "$cmd")
  # `--qmp=SOCK`: readline splits at "=" (COMP_WORDBREAKS), so the value
  # is its own word after an "=" word; `--qmp=` as one word when it is not.
  if [[ $prev == = ]] && (( COMP_CWORD > 1 )); then
    prev=${COMP_WORDS[COMP_CWORD - 2]}=
    grep -qxF -- "$prev" <<<"$opts" && COMPREPLY=($(compgen -f -- "$cur"))
    return 0
  fi
  if [[ $cur == --*=* ]]; then
    COMPREPLY=($(compgen -f -- "${cur#*=}"))
    return 0
  fi
  # After an option that takes a value (`--qmp SOCKET`): a file name.
  if [[ $prev == --* ]] && grep -qxF -- "$prev=" <<<"$opts"; then
    COMPREPLY=($(compgen -f -- "$cur"))
    return 0
  fi
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "${opts//=/}" -- "$cur"))
    return 0
  fi
  COMPREPLY=($(compgen -f -- "$cur"))
  return 0
} &&
  complete -o filenames -F _snapmig snapmig

# ex: filetype=sh
