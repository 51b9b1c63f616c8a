import FleetCore

/// Hosts without systemd: how instances start and stop (pid files under `/run/fleetsync`), the one
/// policy both `up`/`down` (over SSH) and the boot script (``bootScript``) use, and how the boot
/// script is registered with the host's init.
///
/// The boot script is a System V init script (`/etc/init.d/fleetsync`), enabled with `update-rc.d`,
/// the way Debian and Devuan without systemd start services: it needs neither cron nor systemd. At
/// boot it starts one instance per config file `up` left under `/etc/fleetsync`; `down` removes those
/// files, the script and its links.
enum PidFileServices {
  /// Starts an rsync daemon instance; the arguments are shell words (quoted paths or `"$var"`).
  static func startRsyncd(pid: String, log: String, conf: String) -> String {
    // A stale pid file (dead process) would make rsync refuse to start.
    """
    if [ -f \(pid) ] && ! kill -0 "$(cat \(pid))" 2>/dev/null; then rm -f \(pid); fi
    rsync --daemon --config=\(conf) </dev/null >>\(log) 2>&1
    """
  }

  /// Starts a watcher under the supervisor (``Units/supervisor``) and waits for its pid file; the
  /// arguments are shell words.
  static func startWatch(pid: String, log: String, conf: String) throws -> String {
    let sup = try ShellQuote.quote(Layout.supervisor)
    let bin = try ShellQuote.quote(Layout.watchBinary)
    return """
      setsid \(sup) \(pid) \(log) \(bin) \(conf) </dev/null >/dev/null 2>&1 &
      i=0; while [ ! -f \(pid) ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; [ -f \(pid) ]
      """
  }

  /// Stops the instance whose pid file is `pid` (a shell word): TERM, then KILL after 10 s.
  static func stop(pid: String) -> String {
    """
    if [ -f \(pid) ]; then
      p=$(cat \(pid))
      if [ -n "$p" ] && kill -TERM "$p" 2>/dev/null; then
        # A zombie (exited, not yet reaped by init) counts as stopped.
        i=0
        while kill -0 "$p" 2>/dev/null && [ "$(sed 's/.*) //' /proc/$p/stat 2>/dev/null | cut -c1)" != Z ] \\
          && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
        kill -KILL "$p" 2>/dev/null || true
      fi
      rm -f \(pid)
    fi
    true
    """
  }

  /// The boot script's name under `/etc/init.d` and for `update-rc.d`.
  static let bootScriptName = "fleetsync"

  /// Enables the boot script (idempotent); fails with what to do where `update-rc.d` is missing.
  static let enableBootScript = """
    if command -v update-rc.d >/dev/null 2>&1; then
      update-rc.d \(bootScriptName) defaults >/dev/null
    else
      echo "this host has neither systemd nor update-rc.d, so the instances would not come back after a reboot; \
    run \(Layout.bootScript) start at boot with your init system, or install sysvinit's update-rc.d (init-system-helpers)" >&2
      exit 1
    fi
    """

  /// Removes the boot script's links (before the script itself is removed).
  static let disableBootScript =
    "if command -v update-rc.d >/dev/null 2>&1; then update-rc.d -f \(bootScriptName) remove >/dev/null 2>&1; fi; true"

  /// The System V init script `up` installs on hosts without systemd.
  static func bootScript() throws -> String {
    let rsyncd = startRsyncd(pid: "\"$pid\"", log: "\"$log\"", conf: "\"$conf\"")
    let watch = try startWatch(pid: "\"$pid\"", log: "\"$log\"", conf: "\"$conf\"")
    let stopOne = stop(pid: "\"$pid\"")
    return """
      #!/bin/sh
      ### BEGIN INIT INFO
      # Provides:          \(bootScriptName)
      # Required-Start:    $remote_fs $network $syslog
      # Required-Stop:     $remote_fs $network $syslog
      # Default-Start:     2 3 4 5
      # Default-Stop:      0 1 6
      # Short-Description: fleetsync rsync daemons and watchers
      ### END INIT INFO
      \(Layout.header.dropLast())
      # Starts one instance per config file under \(Layout.etc) (rsync daemons first, then watchers);
      # instances already running are left alone.
      run=\(Layout.run) logs=\(Layout.log)

      start_rsyncd() {
      \(rsyncd)
      }

      start_watch() {
      \(watch)
      }

      stop_one() {
      \(stopOne)
      }

      running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

      start() {
        mkdir -p "$run" "$logs"
        status=0
        for kind in rsyncd watch; do
          for conf in \(Layout.etc)/$kind/*.conf; do
            [ -f "$conf" ] || continue
            name=${conf##*/}; name=${name%.conf}
            pid=$run/$kind-$name.pid log=$logs/$kind-$name.log
            running "$pid" && continue
            if "start_$kind"; then echo "fleetsync: started $kind@$name"; else
              echo "fleetsync: $kind@$name did not start; see $log" >&2; status=1; fi
          done
        done
        return $status
      }

      stop() {
        for kind in watch rsyncd; do
          for pid in "$run"/$kind-*.pid; do [ -f "$pid" ] && stop_one; done
        done
        return 0
      }

      case "$1" in
        start) start ;;
        stop) stop ;;
        restart|force-reload) stop; start ;;
        status)
          for pid in "$run"/*.pid; do
            [ -f "$pid" ] || continue
            n=${pid##*/}; n=${n%.pid}
            if running "$pid"; then echo "${n%%-*}@${n#*-} running"; else echo "${n%%-*}@${n#*-} stopped"; fi
          done ;;
        *) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;
      esac

      """
  }
}
