import FleetCore
import Foundation

/// What a node looks like now, read in one remote command before anything is planned.
public struct HostFacts: Sendable, Equatable {
  /// Whether systemd is the init system (`/run/systemd/system` exists).
  public var systemd: Bool
  /// The manifest of a previous `up`, if any.
  public var manifest: Manifest?
  /// Current `fs.inotify.*` values.
  public var sysctl: [String: Int]
  /// Whether fleetsync can set them: false where /proc/sys is read-only (containers, some VPS).
  public var sysctlWritable: Bool
  /// sha256 of every fleetsync-managed file present, by path.
  public var hashes: [String: String]
  /// TCP ports something listens on.
  public var listening: Set<Int>
  /// Service instances that are running (`kind@instance`).
  public var running: Set<String>
  /// Which machine this is: the running kernel's boot id and the device and inode of `/etc`, where
  /// fleetsync keeps its record. Equal for two inventory names only when both reach one machine
  /// (one kernel, one `/etc`); nil when the host does not tell.
  public var machine: String? = nil

  /// Ports held by fleetsync's own running instances: asking for one of them again is no conflict.
  var ownPorts: Set<Int> {
    Set(manifest?.services.filter { running.contains($0.key) }.map(\.value.port) ?? [])
  }

  /// The script that prints the facts, in `@@section` blocks.
  static let script = [
    Part.systemd, Part.manifest, Part.sysctl, Part.hashes, Part.listening, Part.running, Part.machine,
    Part.end,
  ].joined()

  /// The facts script's sections, each printed by its own lines; other scripts (the status probe)
  /// print the ones they need, and ``parse(_:)`` reads whichever are present.
  enum Part {
    static let systemd = "echo @@systemd; if [ -d /run/systemd/system ]; then echo yes; else echo no; fi\n"
    static let manifest = "echo @@manifest; cat \(Layout.manifest) 2>/dev/null; echo\n"
    static let sysctl = #"""
      echo @@sysctl
      for k in max_user_watches max_user_instances max_queued_events; do
        echo "fs.inotify.$k $(cat /proc/sys/fs/inotify/$k)"
      done
      echo @@sysctl-writable; if [ -w /proc/sys/fs/inotify/max_user_watches ]; then echo yes; else echo no; fi

      """#
    static let hashes = #"""
      echo @@hash
      { find /etc/fleetsync /var/lib/fleetsync/bin -type f 2>/dev/null
        ls -d /etc/sysctl.d/60-fleetsync.conf /etc/init.d/fleetsync /etc/systemd/system/fleetsync-*.service \
          /etc/systemd/system/fleetsync-*.timer /etc/cron.d/fleetsync-prune \
          /etc/systemd/system/fleetsync-*.service.d/fleetsync-source.conf 2>/dev/null; } | xargs -r sha256sum

      """#
    static let listening = "echo @@listen; cat /proc/net/tcp /proc/net/tcp6 2>/dev/null\n"
    static let running = #"""
      echo @@running
      if [ -d /run/systemd/system ]; then
        systemctl list-units --state=active --plain --no-legend 'fleetsync-*' 2>/dev/null |
          sed -n 's/^fleetsync-\([a-z]*\)@\([^ ]*\)\.service .*/\1@\2/p'
      fi
      for f in /run/fleetsync/*.pid; do
        [ -f "$f" ] || continue
        p=; read -r p 2>/dev/null <"$f"; [ -n "$p" ] && kill -0 "$p" 2>/dev/null || continue
        n=${f##*/}; n=${n%.pid}; echo "${n%%-*}@${n#*-}"
      done

      """#
    static let machine =
      "echo @@machine; cat /proc/sys/kernel/random/boot_id 2>/dev/null; stat -c %d:%i /etc 2>/dev/null\n"
    /// The last line: output without it was cut short.
    static let end = "echo @@end\n"
  }

  /// Reads the facts of `host`.
  public static func gather(from host: any RemoteHost) async throws -> HostFacts {
    try parse(output: try await host.run(script))
  }

  /// Parses the output of ``script``, or of another script that prints some of its ``Part``s and
  /// ends with ``Part/end``.
  ///
  /// - Throws: when the script failed or its output was cut short.
  static func parse(output out: CommandOutput) throws -> HostFacts {
    guard out.status == 0, out.stdout.contains("@@end") else {
      throw FleetError(
        .remoteStep, "reading the host's state failed (exit \(out.status)): \(out.stderr.suffix(300))")
    }
    return try parse(out.stdout)
  }

  /// Parses the script's output.
  static func parse(_ text: String) throws -> HostFacts {
    let sections = SectionedOutput(text)
    var facts = HostFacts(
      systemd: sections["systemd"]?.first == "yes", manifest: nil, sysctl: [:],
      sysctlWritable: sections["sysctl-writable"]?.first != "no", hashes: [:], listening: [], running: [])
    let manifestText = (sections["manifest"] ?? []).joined(separator: "\n").trimmingCharacters(
      in: .whitespacesAndNewlines)
    if !manifestText.isEmpty {
      do {
        facts.manifest = try JSONDecoder().decode(Manifest.self, from: Data(manifestText.utf8))
      } catch {
        throw FleetError(
          .remoteStep,
          "\(Layout.manifest) on the host is not valid JSON; fix or remove it (it lists what fleetsync created)"
        )
      }
    }
    for line in sections["sysctl"] ?? [] {
      let parts = line.split(separator: " ")
      if parts.count == 2, let v = Int(parts[1]) { facts.sysctl[String(parts[0])] = v }
    }
    for line in sections["hash"] ?? [] {
      // "<64 hex>  <path>"
      guard line.count > 66 else { continue }
      let hash = String(line.prefix(64))
      let path = String(line.dropFirst(66))
      facts.hashes[path] = hash
    }
    for line in sections["listen"] ?? [] {
      // sl local_address rem_address st ...; state 0A = LISTEN
      let cols = line.split(separator: " ", omittingEmptySubsequences: true)
      guard cols.count > 3, cols[3] == "0A", let colon = cols[1].lastIndex(of: ":") else { continue }
      if let port = Int(cols[1][cols[1].index(after: colon)...], radix: 16) { facts.listening.insert(port) }
    }
    for line in sections["running"] ?? [] where !line.isEmpty {
      facts.running.insert(String(line))
    }
    let machine = (sections["machine"] ?? []).filter { !$0.isEmpty }
    if machine.count == 2 { facts.machine = machine.joined(separator: " ") }
    return facts
  }
}
