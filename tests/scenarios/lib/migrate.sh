# shellcheck shell=bash
# Helpers of the migration scenarios (migrate, migrate-traffic). The runner sources every
# tests/scenarios/lib/*.sh after lib.sh and before each scenario.
#
# The receiving domain of `xl migrate` is first called <name>--incoming, so its console may go to
# guest-<name>--incoming.log; the guest also mirrors its console to port 0xE9 (`xl dmesg`).
# mig_find ERE: print the first line matching ERE in any console log of the scenario's guest $G
# (guest-$G*.log) or in `xl dmesg` (its `(dN) ` prefix stripped); false if there is none.
mig_find() {
	local f line
	for f in "$XT_CONSOLE_DIR"/guest-"$G"*.log; do
		[ -r "$f" ] || continue
		while IFS= read -r line || [ -n "$line" ]; do
			line=${line%$'\r'}
			if [[ $line =~ $1 ]]; then
				echo "$line"
				return 0
			fi
		done <"$f"
	done
	while IFS= read -r line; do
		line=${line%$'\r'}
		[[ $line =~ ^\(d[0-9]+\)\ (.*)$ ]] && line=${BASH_REMATCH[1]}
		if [[ $line =~ $1 ]]; then
			echo "$line"
			return 0
		fi
	done < <(xl dmesg 2>/dev/null)
	return 1
}
