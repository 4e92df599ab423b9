# services: the command line chooses the network services. A guest booted with
# `services=udp-echo` says so on its console, answers ping and UDP echo, and refuses TCP on ports 7
# and 5201 (smoltcp answers a SYN to a port without a listener with RST). A guest booted with a bad
# list (`services=echo,ssh`) prints a config error naming it and runs every service (the default).
# xt-timeout: 240
# Helpers net_*: tests/scenarios/lib/net.sh.
G=xt-services
# The bad services= list is what this scenario provokes (lib.sh's common check allows its line).
xt_allow_errors "^xenrs config error: bad value 'echo,ssh' for 'services' "
IP=169.254.77.38
problems=""
# tcp_refused PORT: true if a TCP connect to the guest's PORT fails within 10 s.
tcp_refused() {
	! timeout 10 socat -u OPEN:/dev/null "TCP:$IP:$1,connect-timeout=8" 2>/dev/null
}
NET_SERVICES="udp-echo:7" net_start "$G" "$IP" cmdline="ip=$IP/24 services=udp-echo" || xt_fail "services=udp-echo: $NET_WHY"
net_ping "$IP" 3 || problems+="services=udp-echo: ping: $NET_PING; "
got=$(printf 'only-udp' | timeout 20 socat -t 3 -T 5 - "UDP:$IP:7" 2>/dev/null)
[ "$got" = only-udp ] || problems+="services=udp-echo: UDP echo answered '${got:0:20}'; "
tcp_refused 7 || problems+="services=udp-echo: a TCP connection to port 7 was accepted; "
tcp_refused 5201 || problems+="services=udp-echo: a TCP connection to port 5201 (iperf3) was accepted; "
net_guest_ok "$G" || problems+="services=udp-echo: $NET_WHY; "
xt_destroy "$G"
if [ -z "$problems" ]; then
	G=xt-services-bad
	if ! net_start "$G" "$IP" cmdline="ip=$IP/24 services=echo,ssh"; then
		problems+="services=echo,ssh: $NET_WHY; "
	else
		want="^xenrs config error: bad value 'echo,ssh' for 'services' \\(expected all\\|none or a comma-separated list of echo,udp-echo,iperf3(,nbd)?\\)\$"
		xt_wait_console "$G" "$want" 5 || problems+="services=echo,ssh: no config error line matching '$want'; "
		got=$(printf 'hello-tcp\n' | timeout 20 socat -t 3 -T 5 - "TCP:$IP:7,connect-timeout=8" 2>/dev/null)
		[ "$got" = hello-tcp ] || problems+="services=echo,ssh (default: all): TCP echo answered '${got:0:20}'; "
		[ "$(xt_state "$G")" = running ] || problems+="services=echo,ssh: the guest is $(xt_state "$G"); "
	fi
	xt_destroy "$G"
fi
if [ -n "$problems" ]; then
	result FAIL "$problems $(xt_errors "$G")"
else
	result PASS "services=udp-echo: ping and UDP echo answered, TCP 7 and 5201 refused; services=echo,ssh: config error printed, every service running"
fi
