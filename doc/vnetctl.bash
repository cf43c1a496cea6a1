# bash completion for vnetctl
_vnetctl() {
	local cur prev cmds
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD-1]}
	cmds="net-define net-undefine net-create net-start net-destroy net-list net-info net-dumpxml net-autostart net-uuid net-name net-edit net-update net-dhcp-leases net-event net-port-create net-port-list net-port-dumpxml net-port-delete"
	if [ "$COMP_CWORD" -eq 1 ]; then
		COMPREPLY=($(compgen -W "$cmds --socket -q" -- "$cur"))
		return
	fi
	case "${COMP_WORDS[1]}" in
	net-define|net-create)
		COMPREPLY=($(compgen -f -- "$cur")) ;;
	net-list)
		COMPREPLY=($(compgen -W "--all --inactive --persistent --transient --autostart --no-autostart --name --uuid --table" -- "$cur")) ;;
	*)
		COMPREPLY=($(compgen -W "$(vnetctl -q net-list --all --name 2>/dev/null)" -- "$cur")) ;;
	esac
}
complete -F _vnetctl vnetctl
