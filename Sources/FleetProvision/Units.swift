/// Service definitions fleetsync installs; the files in the repository's `systemd/` folder are
/// these templates (a test keeps them identical).
public enum Units {
  /// systemd template for rsync daemon instances (`%i` = daemon name).
  public static let rsyncd = """
    # Managed by fleetsync: edits are overwritten by `fleetsync up` and removed by `fleetsync down`.
    [Unit]
    Description=fleetsync rsync daemon instance %i
    Documentation=https://github.com/fleetsync/fleetsync/blob/main/docs/provisioning.md
    After=network-online.target
    Wants=network-online.target fleetsync-prune@%i.timer
    StartLimitIntervalSec=300
    StartLimitBurst=10

    [Service]
    Type=simple
    ExecStart=/usr/bin/rsync --daemon --no-detach --config=/etc/fleetsync/rsyncd/%i.conf
    Restart=on-failure
    RestartSec=2
    PIDFile=/run/fleetsync/rsyncd-%i.pid
    RuntimeDirectory=fleetsync
    RuntimeDirectoryPreserve=yes
    NoNewPrivileges=yes
    PrivateTmp=yes

    [Install]
    WantedBy=multi-user.target

    """

  /// systemd template for watcher instances (`%i` = `dir:backup:module`).
  public static let watch = """
    # Managed by fleetsync: edits are overwritten by `fleetsync up` and removed by `fleetsync down`.
    [Unit]
    Description=fleetsync watcher %i
    Documentation=https://github.com/fleetsync/fleetsync/blob/main/docs/watcher.md
    After=network-online.target
    Wants=network-online.target
    RequiresMountsFor=/var/lib/fleetsync /etc/fleetsync
    StartLimitIntervalSec=300
    StartLimitBurst=10

    [Service]
    Type=notify
    NotifyAccess=main
    ExecStart=/var/lib/fleetsync/bin/fleetsync-watch run --config /etc/fleetsync/watch/%i.conf
    ExecReload=/bin/kill -HUP $MAINPID
    Restart=on-failure
    RestartSec=2
    RestartPreventExitStatus=64
    WatchdogSec=30
    TimeoutStopSec=60
    ProtectSystem=strict
    ReadWritePaths=/var/lib/fleetsync -/var/log/fleetsync
    NoNewPrivileges=yes
    PrivateTmp=yes

    [Install]
    WantedBy=multi-user.target

    """

  /// A watcher instance's drop-in (see ``Layout/watchSourceDropIn(_:)``): the instance needs the
  /// filesystem of its source directory, which the template cannot name (`%i` is not a path).
  ///
  /// systemd then orders the watcher after that mount and does not start it while the mount is
  /// missing. The path is double-quoted (the setting is a space-separated list), with `\`, `"`
  /// escaped and `%` doubled (a specifier otherwise).
  public static func sourceMounts(_ source: String) -> String {
    var quoted = ""
    for c in source {
      switch c {
      case "\\", "\"": quoted += "\\" + String(c)
      case "%": quoted += "%%"
      default: quoted.append(c)
      }
    }
    return Layout.header + "[Unit]\nRequiresMountsFor=\"\(quoted)\"\n"
  }

  /// The supervisor of a watcher on hosts without systemd: restarts it when it exits (with backoff),
  /// and restarts it when it is hung, as systemd's watchdog would.
  ///
  /// Every `FLEETSYNC_CHECK_INTERVAL` seconds (10) it runs `fleetsync-watch check`; after
  /// `FLEETSYNC_CHECK_FAILURES` (3) answers in a row of "hung" (no answer, or a stalled event loop)
  /// it stops the watcher (TERM, KILL after `FLEETSYNC_STOP_GRACE` seconds, 10) and starts it again.
  /// A watcher that answers but is unhealthy (waiting for its source, backup down) is left alone:
  /// a restart would not help. Nor is one restarted again that has not answered since it was
  /// restarted for not answering (by this script or by `heal`: ``Layout/unansweredMark(_:)``): then
  /// the cause is not the process (its port blocked or taken), and restarts would only loop; the mark
  /// goes at the first answer. It records its own pid and stops the watcher on TERM, and counts each
  /// restart in ``Layout/restartsFile(_:)``.
  public static let supervisor = #"""
    #!/bin/sh
    # Managed by fleetsync: edits are overwritten by `fleetsync up` and removed by `fleetsync down`.
    # usage: fleetsync-supervise PIDFILE LOGFILE WATCHER CONFIG
    pidfile=$1; log=$2; watcher=$3; config=$4; mark=${1%.pid}.unanswered
    interval=${FLEETSYNC_CHECK_INTERVAL:-10}; limit=${FLEETSYNC_CHECK_FAILURES:-3}
    grace=${FLEETSYNC_STOP_GRACE:-10}
    echo $$ >"$pidfile.tmp" && mv -f "$pidfile.tmp" "$pidfile"
    child=; checker=
    say() { echo "fleetsync-supervise: $(date -u +%Y-%m-%dT%H:%M:%SZ) $*" >>"$log"; }
    # TERM first; CONT so that a stopped watcher gets it; KILL after the grace.
    end() {
      kill -TERM "$1" 2>/dev/null; kill -CONT "$1" 2>/dev/null
      i=0; while kill -0 "$1" 2>/dev/null && [ $i -lt "$grace" ]; do sleep 1; i=$((i+1)); done
      kill -KILL "$1" 2>/dev/null
    }
    stop() {
      trap - TERM INT
      if [ -n "$checker" ]; then kill "$checker" 2>/dev/null; fi
      if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null; kill -CONT "$child" 2>/dev/null; wait "$child"; fi
      rm -f "$pidfile"
      exit 0
    }
    # Runs beside watcher $1 until the main loop ends it; ends the watcher when it is hung, unless it
    # has not answered since a restart for that ($mark): a restart does not fix what blocks its port.
    watchdog() {
      fails=0
      while sleep "$interval"; do
        verdict=$("$watcher" check --config "$config" 2>&1); rc=$?
        if [ "$rc" -ne 2 ]; then fails=0; rm -f "$mark"; continue; fi
        fails=$((fails + 1))
        [ "$fails" -le "$limit" ] && say "check $fails/$limit: $verdict"
        [ "$fails" -ge "$limit" ] || continue
        if [ -f "$mark" ]; then
          [ "$fails" -eq "$limit" ] && say "the watcher (pid $1) does not answer, also since a restart for that" \
            "($(cat "$mark")): a restart does not fix this, so it is not restarted again until it has answered"
          continue
        fi
        echo "$(date +%s) fleetsync-supervise" >"$mark"
        say "the watcher (pid $1) is hung: stopping it to start it again"
        end "$1"
        return
      done
    }
    trap stop TERM INT
    delay=1
    while :; do
      started=$(date +%s)
      "$watcher" run --config "$config" </dev/null >>"$log" 2>&1 &
      child=$!
      watchdog "$child" </dev/null >/dev/null 2>&1 &
      checker=$!
      wait "$child"
      status=$?
      kill "$checker" 2>/dev/null
      child=; checker=
      say "the watcher exited with status $status; restarting in ${delay}s"
      n=$(cat "${pidfile%.pid}.restarts" 2>/dev/null); echo $(( ${n:-0} + 1 )) >"${pidfile%.pid}.restarts"
      [ $(( $(date +%s) - started )) -ge 60 ] && delay=1
      sleep "$delay" & wait $!
      [ "$delay" -lt 30 ] && delay=$((delay * 2))
    done

    """#
}
