# bash completion for vnetctl.
#
# Plain bash only: it does not use the bash-completion package's helpers
# (_init_completion …), so it also works where only this file is sourced.
# Global options (--socket PATH, --socket=PATH, -q, --quiet) may come before
# or after the command; network names are asked from the daemon on the same
# socket, with the same binary that is being completed.

# _vnetctl_list runs "net-list --name" with the given selection options.
_vnetctl_list() {
	local -a argv=("$_vnetctl_bin" -q)
	[ -n "$_vnetctl_socket" ] && argv+=(--socket "$_vnetctl_socket")
	"${argv[@]}" net-list "$@" 2>/dev/null
}

_vnetctl() {
	local cur=${COMP_WORDS[COMP_CWORD]}
	local prev=${COMP_WORDS[COMP_CWORD-1]}
	local cmds="net-define net-undefine net-create net-start net-destroy net-list net-info net-dumpxml net-autostart net-uuid net-name net-edit net-update net-dhcp-leases net-event net-port-create net-port-list net-port-dumpxml net-port-delete net-port-attach net-doctor"
	local globals="--socket --quiet -q"
	local _vnetctl_bin=${COMP_WORDS[0]} _vnetctl_socket=""
	local cmd="" nargs=0 i=1 w dash=0
	COMPREPLY=()

	# bash splits "--socket=PATH" into "--socket" "=" "PATH" when '=' is in
	# COMP_WORDBREAKS (the default); both spellings are handled.
	local value_of=""
	if [ "$prev" = "=" ] && [ "$COMP_CWORD" -ge 2 ]; then
		value_of=${COMP_WORDS[COMP_CWORD-2]}
	elif [ "$cur" = "=" ]; then
		value_of=$prev
		cur=""
	elif [[ $prev == --* ]]; then
		value_of=$prev
	fi
	if [[ $cur == --socket=* ]]; then
		local pre=${cur%%=*}= path=${cur#*=}
		COMPREPLY=($(compgen -f -- "$path"))
		COMPREPLY=("${COMPREPLY[@]/#/$pre}")
		return
	fi

	# Find the command and its positional arguments before the cursor,
	# skipping options and the values of options that take one.
	while [ "$i" -lt "$COMP_CWORD" ]; do
		w=${COMP_WORDS[i]}
		case $w in
		--)
			# net-port-attach: what follows is the command to run.
			dash=$i
			break ;;
		--socket|--file|--network|--port|--fd|--xml|--command|--section|--parent-index|--mac|--event|--timeout)
			if [ "${COMP_WORDS[i+1]}" = "=" ]; then
				i=$((i + 1))
			fi
			i=$((i + 1))
			if [ "$w" = --socket ] && [ "$i" -lt "$COMP_CWORD" ]; then
				_vnetctl_socket=${COMP_WORDS[i]}
			fi
			;;
		--socket=*)
			_vnetctl_socket=${w#--socket=} ;;
		-*) ;;
		*)
			if [ -z "$cmd" ]; then
				cmd=$w
			else
				nargs=$((nargs + 1))
			fi
			;;
		esac
		i=$((i + 1))
	done
	if [ "$dash" -gt 0 ]; then
		if [ "$COMP_CWORD" -eq $((dash + 1)) ]; then
			COMPREPLY=($(compgen -c -- "$cur"))
		else
			COMPREPLY=($(compgen -f -- "$cur"))
		fi
		return
	fi
	# Paths given as ~/x are expanded as the shell would.
	case $_vnetctl_socket in
	"~"/*) _vnetctl_socket=$HOME/${_vnetctl_socket#"~"/} ;;
	esac
	case $_vnetctl_bin in
	"~"/*) _vnetctl_bin=$HOME/${_vnetctl_bin#"~"/} ;;
	esac

	# The value of an option.
	case $value_of in
	--socket|--file|--xml)
		COMPREPLY=($(compgen -f -- "$cur"))
		return ;;
	--network)
		COMPREPLY=($(compgen -W "$(_vnetctl_list --all --name)" -- "$cur"))
		return ;;
	--command)
		COMPREPLY=($(compgen -W "add add-first add-last delete modify" -- "$cur"))
		return ;;
	--section)
		COMPREPLY=($(compgen -W "bridge domain ip ip-dhcp-host ip-dhcp-range forward forward-interface forward-pf portgroup dns-host dns-txt dns-srv" -- "$cur"))
		return ;;
	--event)
		COMPREPLY=($(compgen -W "lifecycle port warning" -- "$cur"))
		return ;;
	--parent-index|--mac|--timeout|--port|--fd)
		return ;;
	esac

	if [ -z "$cmd" ]; then
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "$globals" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$cmds" -- "$cur"))
		fi
		return
	fi

	local opts="" words=""
	case $cmd in
	net-define) opts="--file --validate" ;;
	net-create) opts="--file --validate --dry-run" ;;
	net-start) opts="--network --dry-run" ;;
	net-autostart) opts="--network --disable" ;;
	net-dumpxml) opts="--network --inactive" ;;
	net-info) opts="--network --json" ;;
	net-list) opts="--all --inactive --persistent --transient --autostart --no-autostart --name --uuid --table" ;;
	net-update) opts="--network --command --section --xml --parent-index --live --config --current" ;;
	net-dhcp-leases) opts="--network --mac --json" ;;
	net-event) opts="--network --event --loop --timeout --timestamp --list" ;;
	net-port-create) opts="--network --file --validate" ;;
	net-port-list) opts="--network --table --uuid" ;;
	net-port-dumpxml|net-port-delete) opts="--network --port" ;;
	net-port-attach) opts="--network --port --fd" ;;
	net-doctor) opts="--network --json" ;;
	net-*) opts="--network" ;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$opts $globals" -- "$cur"))
		return
	fi

	case $cmd in
	net-define|net-create)
		[ "$nargs" -eq 0 ] && COMPREPLY=($(compgen -f -- "$cur"))
		return ;;
	net-list)
		return ;;
	net-port-create)
		case $nargs in
		0) words=$(_vnetctl_list --name) ;;
		1) COMPREPLY=($(compgen -f -- "$cur"))
			return ;;
		esac ;;
	net-port-*)
		[ "$nargs" -eq 0 ] && words=$(_vnetctl_list --name) ;;
	net-start)
		[ "$nargs" -eq 0 ] && words=$(_vnetctl_list --inactive --name) ;;
	net-destroy)
		[ "$nargs" -eq 0 ] && words=$(_vnetctl_list --name) ;;
	net-name)
		[ "$nargs" -eq 0 ] && words=$(_vnetctl_list --all --uuid) ;;
	net-update)
		case $nargs in
		0) words=$(_vnetctl_list --all --name) ;;
		1) words="add add-first add-last delete modify" ;;
		2) words="bridge domain ip ip-dhcp-host ip-dhcp-range forward forward-interface forward-pf portgroup dns-host dns-txt dns-srv" ;;
		3) COMPREPLY=($(compgen -f -- "$cur"))
			return ;;
		esac ;;
	net-*)
		[ "$nargs" -eq 0 ] && words=$(_vnetctl_list --all --name) ;;
	esac
	COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -F _vnetctl vnetctl
