import FleetCore
import FleetInventory
import Foundation

/// The one remote command of `fleetsync status` and of each heal pass: the facts status needs
/// (init system, manifest, what runs), the backup modules' sizes, and for every instance its health,
/// its watcher `/status`, its restarts and its uptime.
///
/// The controller does not know a host's instances before it reads the host's manifest, so the
/// script probes the instances the controller's port book expects there (``expected(on:book:)``).
/// Only an instance the manifest lists and the book does not (another controller set it up, or its
/// state file was lost) costs a second command (``probes(_:)``).
enum StatusProbe {
  /// An instance and the port to probe it on.
  typealias Instance = (name: ServiceName, port: Int)

  /// What one instance's section said.
  struct Reading: Sendable, Equatable {
    /// It answered healthy (the rsync greeting, or `/healthz` 200).
    var healthy = false
    /// Its watcher `/status`, one line of JSON.
    var statusJSON: String?
    /// Restarts since boot: by systemd, the pid-file supervisor, or `heal`.
    var restarts: Int?
    /// Seconds since its process started; nil when it does not run.
    var uptimeSeconds: Int?
    /// The content of its ``Layout/unansweredMark(_:)`` (`EPOCH BY`), when there is one.
    var unansweredMark: String?
    /// The host's clock when the instance was probed (seconds since the epoch): a watcher's
    /// heartbeat is compared with it, not with the controller's clock.
    var clock: Int?
    /// An rsync daemon's modules that failed the authenticated no-op (``ModuleProbe``), with why.
    var moduleFailures: [String: String] = [:]
  }

  /// What precedes the content of an instance's ``Layout/unansweredMark(_:)`` in its section.
  static let unansweredPrefix = "unanswered "

  /// The first line of the script (it tells the script apart in logs and fakes).
  static let header = "# fleetsync status\n"

  /// Bash function `info UNIT FILEPREFIX KIND`: prints `restarts N` and, when its process runs,
  /// `uptime SECONDS` (from `/proc`). The process is systemd's main pid of the unit, else the pid
  /// file's (a watcher's pid file holds its supervisor, whose child it is). Systemd's numbers come
  /// from one `systemctl show` of every unit, made before the probes start (``systemdFacts(_:)``);
  /// everything else is read with bash builtins, so it starts no process.
  static let infoFunction = #"""
    watcher_of() { # supervisor-pid: sets $p to its child that runs the watcher, or to nothing
      local kid a0 a1 a2
      p=
      if [ -r "/proc/$1/task/$1/children" ]; then
        read -r -a kids <"/proc/$1/task/$1/children"
        for kid in "${kids[@]}"; do
          { IFS= read -r -d '' a0; IFS= read -r -d '' a1; IFS= read -r -d '' a2; } <"/proc/$kid/cmdline" 2>/dev/null
          if [ "$a1" = run ] && [ "$a2" = --config ]; then p=$kid; return; fi
        done
      else
        p=$(pgrep -o -P "$1" -f ' run --config' 2>/dev/null)
      fi
    }
    info() { # unit file-prefix kind
      local c= n=${nrestarts[$1]} st up u f
      p=${mainpid[$1]}
      [ -r "$2.restarts" ] && read -r c <"$2.restarts"
      case "$c" in ''|*[!0-9]*) c=0;; esac; case "$n" in ''|*[!0-9]*) n=0;; esac
      echo "restarts $((c + n))"
      if [ -z "$p" ] || [ "$p" = 0 ]; then
        p=; [ -r "$2.pid" ] && read -r p <"$2.pid"
        [ "$3" = watch ] && [ -n "$p" ] && watcher_of "$p"
      fi
      [ -n "$p" ] && [ -r "/proc/$p/stat" ] && read -r st <"/proc/$p/stat" || return 0
      f=(${st##*) }); read -r up _ </proc/uptime
      u=$(( ${up%.*} - ${f[19]:-0} / hz )); [ $u -lt 0 ] && u=0
      echo "uptime $u"
    }

    """#

  /// Bash: systemd's restart count and main pid of each of `units` into the arrays `nrestarts` and
  /// `mainpid`, in one `systemctl show`; the clock ticks per second into `hz`.
  static func systemdFacts(_ units: [String]) throws -> String {
    let text = "hz=$(getconf CLK_TCK 2>/dev/null); hz=${hz:-100}\ndeclare -A nrestarts mainpid\n"
    guard !units.isEmpty else { return text }
    let quoted = try units.map(ShellQuote.quote).joined(separator: " ")
    return text + """
      if [ -d /run/systemd/system ]; then
        while IFS='=' read -r k v; do
          case "$k" in
            Id) id=$v;; NRestarts) n=$v;; MainPID) m=$v;;
            '') [ -n "$id" ] && { nrestarts[$id]=$n; mainpid[$id]=$m; }; id= n= m=;;
          esac
        done < <(systemctl show -p Id -p NRestarts -p MainPID \(quoted) </dev/null 2>/dev/null; echo)
      fi

      """
  }

  /// The section of `instance` in the output: its name and the port it was probed on.
  static func section(_ instance: Instance) -> String { "\(instance.name) \(instance.port)" }

  /// The whole status command: facts, module sizes (on backup hosts) and the probes of `expected`.
  static func script(expected: [Instance], backup: Bool) throws -> String {
    var script = header + HostFacts.Part.systemd + HostFacts.Part.manifest + HostFacts.Part.running
    if backup { script += "echo @@sizes; \(ModuleSize.command)\n" }
    return script + (try probes(expected)) + HostFacts.Part.end
  }

  /// The probes of `instances` alone (the second command, for instances the book did not expect).
  ///
  /// They run at once, each into a file of its own, printed in order when all are done: a host takes
  /// as long as its slowest instance, however many it has. Every read waits 2 s at most; a watchdog
  /// ends any probe still running after 8 s (a connection that hangs), which then shows as not
  /// answering.
  static func probes(_ instances: [Instance]) throws -> String {
    guard !instances.isEmpty else { return header }
    var script = HealthProbe.functions + infoFunction
    if instances.contains(where: { $0.name.kind == .rsyncd }) { script += ModuleProbe.function }
    script += try systemdFacts(instances.map(\.name.unit))
    script += "d=$(mktemp -d /tmp/fleetsync-status.XXXXXX) || exit 1\npids=()\n"
    for (index, instance) in instances.enumerated() {
      script += try probe(instance) + " >\"$d/\(String(format: "%06d", index))\" 2>/dev/null &\npids+=($!)\n"
    }
    script += """
      mkfifo "$d/.timer" && { read -r -t 8 <>"$d/.timer"; kill -KILL "${pids[@]}"; } >/dev/null 2>&1 &
      w=$!
      wait "${pids[@]}"; kill "$w" 2>/dev/null; rm -f "$d/.timer"
      cat "$d"/* 2>/dev/null; rm -rf "$d"

      """
    return header + HealthProbe.bash(script)
  }

  /// One instance's block: its section marker, then what its probe says.
  private static func probe(_ instance: Instance) throws -> String {
    let name = instance.name
    let kind = name.kind.rawValue
    var block = "{\n" + (try SectionedOutput.marker(section(instance))) + "\n"
    block += "probe \(kind) \(instance.port) && echo healthy"
    block +=
      name.kind == .rsyncd ? " && modules \(try ShellQuote.quote(name.instance)) \(instance.port)\n" : "\n"
    if name.kind == .watch { block += "status_body \(instance.port)\nprintf 'clock %(%s)T\\n' -1\n" }
    let prefix = "\(Layout.run)/\(kind)-\(name.instance)"
    block += "info \(try ShellQuote.quote(name.unit)) \(try ShellQuote.quote(prefix)) \(kind)\n"
    let mark = try ShellQuote.quote(Layout.unansweredMark(name))
    block += "[ -f \(mark) ] && read -r l <\(mark) && echo \"\(unansweredPrefix)$l\"\n"
    return block + "}"
  }

  /// What `instance`'s section in `output` said; nil when the output has no such section.
  static func reading(_ instance: Instance, in output: SectionedOutput) -> Reading? {
    guard let lines = output[section(instance)] else { return nil }
    var reading = Reading()
    for failure in ModuleProbe.failures(in: lines) { reading.moduleFailures[failure.module] = failure.reason }
    for line in lines {
      if line == "healthy" {
        reading.healthy = true
      } else if line.hasPrefix("{") {
        reading.statusJSON = String(line)
      } else if line.hasPrefix("restarts ") {
        reading.restarts = Int(line.dropFirst("restarts ".count))
      } else if line.hasPrefix("uptime ") {
        reading.uptimeSeconds = Int(line.dropFirst("uptime ".count))
      } else if line.hasPrefix("clock ") {
        reading.clock = Int(line.dropFirst("clock ".count))
      } else if line.hasPrefix(unansweredPrefix) {
        reading.unansweredMark = String(line.dropFirst(unansweredPrefix.count))
      }
    }
    return reading
  }

  /// The instances the controller's port book has on host `host`, sorted.
  static func expected(on host: String, book: PortBook) -> [Instance] {
    book.ports.compactMap { key, port -> Instance? in
      guard key.hasPrefix(host + "/"), let name = Planner.parseService(String(key.dropFirst(host.count + 1)))
      else { return nil }
      return (name, port)
    }
    .sorted { $0.name < $1.name }
  }
}
