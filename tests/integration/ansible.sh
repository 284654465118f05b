# The tests' private Ansible (sourced after lib.sh): every Ansible
# directory (home, temp, config, collections) in the test's directory.
#   ansible_env          # ANS_ENV set, its directories made; ans works
#   ans COMMAND...       # COMMAND in that environment, bounded
#   ansible_install      # the collection built from ansible/ and installed
#                        # into $T/collections (quiet; false on failure)

ansible_env () {
  # Ansible reads and writes only here: no ~/.ansible, no /etc/ansible.
  # ansible-core's callbacks print no JSON (the json callback is in
  # ansible.posix, not in Debian's ansible-core): ansible/tests/callbacks has
  # one that prints every task's result per host as one document.
  mkdir -p "$T/home" "$T/ansible-tmp" "$T/collections"
  : >"$T/ansible.cfg"
  ANS_ENV=(HOME="$T/home" ANSIBLE_HOME="$T/home/.ansible"
           ANSIBLE_CONFIG="$T/ansible.cfg" ANSIBLE_LOCAL_TEMP="$T/ansible-tmp"
           ANSIBLE_REMOTE_TEMP="$T/ansible-tmp" ANSIBLE_COLLECTIONS_PATH="$T/collections"
           ANSIBLE_CALLBACK_PLUGINS="$SM_TOP/ansible/tests/callbacks"
           ANSIBLE_STDOUT_CALLBACK=results_json ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0
           ANSIBLE_PYTHON_INTERPRETER=auto_silent ANSIBLE_LOCALHOST_WARNING=0
           ANSIBLE_INVENTORY_UNPARSED_WARNING=0 PYTHONDONTWRITEBYTECODE=1)
}

# ans COMMAND...: COMMAND in that environment, bounded (a playbook here
# takes seconds; snapmig's own waits are bounded by the tasks' timeout).
ans () { timeout --kill-after=10 300 env "${ANS_ENV[@]}" "$@"; }

ansible_install () {
  ans ansible-galaxy collection build "$SM_TOP/ansible" --output-path "$T" \
    >"$T/galaxy.out" 2>&1 &&
    ans ansible-galaxy collection install --offline -p "$T/collections" \
      "$T/snapmig-storage-0.1.0.tar.gz" >>"$T/galaxy.out" 2>&1
}
