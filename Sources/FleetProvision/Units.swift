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
    Wants=network-online.target
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
    RestartPreventExitStatus=64 69
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

  /// A minimal supervisor for hosts without systemd: restarts the command when it exits (with
  /// backoff), records its own pid, and stops the command on TERM.
  public static let supervisor = #"""
    #!/bin/sh
    # Managed by fleetsync: edits are overwritten by `fleetsync up` and removed by `fleetsync down`.
    # usage: fleetsync-supervise PIDFILE LOGFILE COMMAND [ARG...]
    pidfile=$1; log=$2; shift 2
    echo $$ >"$pidfile.tmp" && mv -f "$pidfile.tmp" "$pidfile"
    child=
    stop() {
      trap - TERM INT
      if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null; wait "$child"; fi
      rm -f "$pidfile"
      exit 0
    }
    trap stop TERM INT
    delay=1
    while :; do
      started=$(date +%s)
      "$@" </dev/null >>"$log" 2>&1 &
      child=$!
      wait "$child"
      status=$?
      child=
      echo "fleetsync-supervise: $1 exited with status $status; restarting in ${delay}s" >>"$log"
      [ $(( $(date +%s) - started )) -ge 60 ] && delay=1
      sleep "$delay" & wait $!
      [ "$delay" -lt 30 ] && delay=$((delay * 2))
    done

    """#
}
