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

  /// Shell function `info UNIT FILEPREFIX KIND`: prints `restarts N` and, when its process runs,
  /// `uptime SECONDS` (from `/proc`, so no `ps` is needed). The process is systemd's main pid of the
  /// unit, else the pid file's (a watcher's pid file holds its supervisor, whose child it is).
  static let infoFunction = #"""
    info() { # unit file-prefix kind
      c=$(cat "$2.restarts" 2>/dev/null); n=0; p=
      if [ -d /run/systemd/system ]; then
        for kv in $(systemctl show -p NRestarts -p MainPID "$1" 2>/dev/null); do
          case "$kv" in NRestarts=*) n=${kv#*=};; MainPID=*) p=${kv#*=};; esac
        done
      fi
      case "$c" in ''|*[!0-9]*) c=0;; esac; case "$n" in ''|*[!0-9]*) n=0;; esac
      echo "restarts $((c + n))"
      if [ -z "$p" ] || [ "$p" = 0 ]; then
        p=$(cat "$2.pid" 2>/dev/null)
        [ "$3" = watch ] && [ -n "$p" ] && p=$(pgrep -o -P "$p" -f ' run --config' 2>/dev/null)
      fi
      [ -n "$p" ] && [ -r "/proc/$p/stat" ] || return 0
      s=$(sed 's/.*) //' "/proc/$p/stat" | cut -d' ' -f20)
      awk -v s="$s" -v hz="$(getconf CLK_TCK 2>/dev/null || echo 100)" \
        '{ u = int($1 - s / hz); if (u < 0) u = 0; print "uptime " u }' /proc/uptime
    }

    """#

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
  /// as long as its slowest instance (each probe gives up after 2 s), however many it has.
  static func probes(_ instances: [Instance]) throws -> String {
    var script = header + HealthProbe.functions + infoFunction
    if instances.contains(where: { $0.name.kind == .rsyncd }) { script += ModuleProbe.function }
    script += "d=$(mktemp -d /tmp/fleetsync-status.XXXXXX) || exit 1\n"
    for (index, instance) in instances.enumerated() {
      let name = instance.name
      let prefix = "\(Layout.run)/\(name.kind.rawValue)-\(name.instance)"
      script += "{\n" + (try SectionedOutput.marker(section(instance))) + "\n"
      script += "probe \(name.kind.rawValue) \(instance.port) && echo healthy"
      script +=
        name.kind == .rsyncd ? " && modules \(try ShellQuote.quote(name.instance)) \(instance.port)\n" : "\n"
      if name.kind == .watch { script += "status_body \(instance.port)\necho \"clock $(date +%s)\"\n" }
      script +=
        "info \(try ShellQuote.quote(name.unit)) \(try ShellQuote.quote(prefix)) \(name.kind.rawValue)\n"
      let mark = try ShellQuote.quote(Layout.unansweredMark(name))
      script += "[ -f \(mark) ] && echo \"\(unansweredPrefix)$(head -n 1 \(mark))\"\n"
      script += "} >\"$d/\(String(format: "%06d", index))\" 2>/dev/null &\n"
    }
    return script + "wait; cat \"$d\"/* 2>/dev/null; rm -rf \"$d\"\n"
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
