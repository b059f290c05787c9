#!/usr/bin/env bash
# make run: build vigil, start a server (embedded etcd, controllers and a
# local node agent with the qemu runtime) in the background, apply the
# example VMs, which boot the test guest, and print how to look at them.
# `make run` has installed QEMU and built the guest first. Everything lives
# under $VIGIL_RUN_DIR (default ./.vigil-run); a second `make run` restarts
# the server on the same data. `scripts/run.sh stop` (make stop) stops the
# server, lets the node's watchdog fence the guests, and stops the watchdog.
set -euo pipefail
cd "$(dirname "$0")/.."

run_dir=${VIGIL_RUN_DIR:-$PWD/.vigil-run}
listen=${VIGIL_LISTEN:-127.0.0.1:7070}
runtime=${VIGIL_RUNTIME:-qemu}
server_url="http://$listen"
mkdir -p "$run_dir"

if [ "${1:-}" = stop ]; then
	if [ -f "$run_dir/server.pid" ] && kill "$(cat "$run_dir/server.pid")" 2>/dev/null; then
		echo "Stopped vigil server (pid $(cat "$run_dir/server.pid")); the watchdog fences its guests in 4 s"
		sleep 5
	fi
	wd=$run_dir/data/agent/watchdog.pid
	if [ -f "$wd" ] && kill "$(cat "$wd")" 2>/dev/null; then
		echo "Stopped the node's watchdog (pid $(cat "$wd"))"
	fi
	exit 0
fi

if [ -f "$run_dir/server.pid" ] && kill -0 "$(cat "$run_dir/server.pid")" 2>/dev/null; then
	echo "Stopping the previous vigil server (pid $(cat "$run_dir/server.pid"))"
	kill "$(cat "$run_dir/server.pid")"
	for _ in $(seq 50); do kill -0 "$(cat "$run_dir/server.pid")" 2>/dev/null || break; sleep 0.1; done
fi

echo "Building bin/vigil"
go build -o bin/vigil ./cmd/vigil

echo "Starting vigil server ($runtime runtime) on $server_url, data in $run_dir"
nohup bin/vigil server --data-dir "$run_dir/data" --listen "$listen" --runtime "$runtime" \
	--node "$(hostname)" --sim-journal "$run_dir/sim-journal" >"$run_dir/server.log" 2>&1 &
echo $! >"$run_dir/server.pid"

for _ in $(seq 100); do
	if curl -fsS "$server_url/readyz" >/dev/null 2>&1; then break; fi
	if ! kill -0 "$(cat "$run_dir/server.pid")" 2>/dev/null; then
		echo "vigil server exited; its log:" >&2
		cat "$run_dir/server.log" >&2
		exit 1
	fi
	sleep 0.2
done
curl -fsS "$server_url/readyz" >/dev/null || { echo "vigil server did not become ready; see $run_dir/server.log" >&2; exit 1; }

export VIGIL_SERVER=$server_url
bin/vigil apply -f examples/
vmi_url=$server_url/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances/vm-always
echo "Waiting for vm-always to run"
for _ in $(seq 120); do
	curl -fsS "$vmi_url" 2>/dev/null | grep -q '"phase":"Running"' && break
	sleep 0.5
done
bin/vigil get vms
bin/vigil get vmis -o wide
http_port=$(curl -fsS "$vmi_url" 2>/dev/null | sed -n 's/.*"guestPort":80,[^}]*"hostPort":\([0-9]*\).*/\1/p')

cat <<MSG

Vigil is running (pid $(cat "$run_dir/server.pid"), log $run_dir/server.log).

  export VIGIL_SERVER=$server_url
  bin/vigil get vms -w               # watch the VMs' statuses
  bin/vigil get vmis -o wide         # their instances and nodes
  bin/vigil describe vm vm-always    # state, conditions and events
  bin/vigil console vm-always        # its serial console (^] to leave); try: poweroff
  bin/vigil console --log vm-always  # what it printed while booting
  curl http://127.0.0.1:${http_port:-PORT}/   # its web server, port 80 forwarded (status.portForwards)
  bin/vigil start vm-manual          # try the lifecycle verbs
  bin/vigil stop vm-always
  make stop                          # stop the server (its watchdog then fences the guests)
MSG
