import FleetCore
import FleetInventory
import Foundation

@testable import FleetProvision

/// How ``FakeRemoteHost`` reads and carries out the shell commands provisioning sends.
extension FakeRemoteHost {
  /// Which step a command is.
  static func classify(_ command: String) -> FakeStep {
    if command == HostFacts.script { return .facts }
    if command.hasPrefix(ModuleXattrCheck.marker) { return .xattrCheck }
    if command.hasPrefix("L=\((try? ShellQuote.quote(NodeLease.path)) ?? "")") { return .lease }
    if command == PidFileServices.enableBootScript { return .bootScript(enabled: true) }
    if command == PidFileServices.disableBootScript { return .bootScript(enabled: false) }
    if command.hasPrefix("set -e; umask 022") { return .makeDirectories }
    if command.hasPrefix("systemctl daemon-reload") { return .reloadUnits }
    if command.hasPrefix("sysctl -q -p ") { return .applySysctl }
    if command.hasPrefix("rm -f -- ") { return .remove(words(command.dropFirst("rm -f -- ".count))) }
    if command.hasPrefix("echo "), let path = command.firstMatch(of: #/> '/proc/sys/([^']+)'/#) {
      return .restoreSysctl(path.1.replacingOccurrences(of: "/", with: "."))
    }
    if let resume = resumeStep(command) { return resume }
    if command.contains("until probe ") { return .health }
    if command.hasPrefix(StatusProbe.header) { return .status }
    if command.contains("rmdir -- ") { return .removeDirectories }
    if let service = serviceName(in: command) {
      let starts = ["systemctl enable --now", "rsync --daemon", "setsid "].contains { command.contains($0) }
      let stops = ["systemctl disable --now", "kill -TERM"].contains { command.contains($0) }
      if command.contains("systemctl restart") || (starts && stops) { return .restart(service) }
      if stops { return .stop(service) }
      if starts { return .start(service) }
    }
    return .unknown(String(command.prefix { $0 != "\n" }))
  }

  /// The instance a service command is about: from its unit name or its pid file.
  static func serviceName(in command: String) -> String? {
    if let unit = command.firstMatch(of: #/fleetsync-(rsyncd|watch)@([^']+)\.service/#) {
      return "\(unit.1)@\(unit.2)"
    }
    if let pid = command.firstMatch(of: #/\/run\/fleetsync\/(rsyncd|watch)-([^']+)\.pid/#) {
      return "\(pid.1)@\(pid.2)"
    }
    return nil
  }

  /// The words of a shell line (single-quoted or bare), up to a redirection or `||`.
  static func words(_ line: Substring) -> [String] {
    var words: [String] = []
    var rest = line[...]
    while let first = rest.first {
      if first == " " {
        rest = rest.dropFirst()
      } else if first == "'" {
        let body = rest.dropFirst()
        let end = body.firstIndex(of: "'") ?? body.endIndex
        words.append(String(body[..<end]))
        rest = end == body.endIndex ? "" : body[body.index(after: end)...]
      } else {
        let end = rest.firstIndex(of: " ") ?? rest.endIndex
        let word = String(rest[..<end])
        if word.hasPrefix("2>") || word == "||" { break }
        words.append(word)
        rest = rest[end...]
      }
    }
    return words
  }

  /// Carries out a recognised step.
  static func execute(_ step: FakeStep, _ command: String, _ m: inout Machine) -> CommandOutput {
    let ok = CommandOutput(status: 0, stdout: "", stderr: "")
    switch step {
    case .facts: return CommandOutput(status: 0, stdout: factsOutput(m), stderr: "")
    case .makeDirectories:
      // In script order, as the shell runs it: a data directory, then what is made inside it.
      for match in command.matches(of: #/(mkdir -p|fleetsync_create_data_dir) '([^']+)'/#) {
        let path = String(match.2)
        if match.1 == "mkdir -p" {
          makeDirectory(path, &m)
        } else if !m.directories.contains(path) {
          makeDirectory(path, &m)
          m.createdData.insert(path)
        }
      }
      return ok
    case .applySysctl:
      guard let text = m.files[Layout.sysctl] else { return failure("sysctl: no \(Layout.sysctl)") }
      if m.sysctlReadOnly {
        return failure("sysctl: permission denied on key \"fs.inotify.max_user_watches\"")
      }
      for line in String(decoding: text, as: UTF8.self).split(separator: "\n") where !line.hasPrefix("#") {
        let parts = line.split(separator: " ")
        if parts.count == 3, let value = Int(parts[2]) { m.sysctl[String(parts[0])] = value }
      }
      return ok
    case .remove(let paths):
      for path in paths { m.files[path] = nil }
      return ok
    case .restoreSysctl(let key):
      if let value = command.firstMatch(of: #/^echo (\d+) /#).flatMap({ Int($0.1) }) { m.sysctl[key] = value }
      return ok
    case .removeDirectories:
      let kept = command.split(separator: "\n").flatMap { removeDirectories($0, &m) }
      return CommandOutput(status: 0, stdout: kept.map { "@@kept\n\($0)\n" }.joined(), stderr: "")
    case .health: return CommandOutput(status: 0, stdout: healthOutput(command, m), stderr: "")
    case .status: return CommandOutput(status: 0, stdout: statusOutput(command, m), stderr: "")
    case .resume(let config, _): return resumeOutput(config: config, m)
    case .xattrCheck:
      let lines = command.matches(of: #/fleetsync_xattr_check '([^']+)'/#).map { match in
        m.noUserXattrs.contains(String(match.1))
          ? "unsupported\t\(match.1)\tfailed to write xattr user.rsync.%stat: Operation not supported (95)"
          : "ok\t\(match.1)\t"
      }
      return CommandOutput(
        status: 0, stdout: "@@xattr\n" + lines.joined(separator: "\n") + "\n@@end\n", stderr: "")
    case .stop(let name):
      m.running[name] = nil
      return ok
    case .start(let name), .restart(let name):
      m.running[name] = nil
      return start(name, &m)
    case .bootScript(let enabled):
      guard !enabled || m.files[Layout.bootScript] != nil else { return failure("update-rc.d: no script") }
      m.bootEnabled = enabled
      return ok
    case .reloadUnits, .read, .write, .lease, .unknown: return ok
    }
  }

  static func failure(_ message: String) -> CommandOutput {
    CommandOutput(status: 1, stdout: "", stderr: message)
  }

  static func makeDirectory(_ path: String, _ m: inout Machine) {
    var dir = path
    while !m.directories.contains(dir) {
      m.directories.insert(dir)
      dir = parent(dir)
    }
  }

  /// `rm -rf -- …` removes trees; `rmdir -- …` removes each directory that is empty; a data
  /// directory is removed when the record lists it, else kept (returned); the record is forgotten.
  static func removeDirectories(_ line: Substring, _ m: inout Machine) -> [String] {
    if let data = line.firstMatch(of: #/^fleetsync_delete_data_dir '([^']+)'/#).map({ String($0.1) }) {
      guard m.directories.contains(data) else { return [] }
      guard m.createdData.contains(data) else { return [data] }
      m.directories = m.directories.filter { $0 != data && !$0.hasPrefix(data + "/") }
      m.files = m.files.filter { !$0.key.hasPrefix(data + "/") }
    } else if line == "rm -f -- \((try? ShellQuote.quote(CreatedDataDirectories.record)) ?? "")" {
      m.createdData = []
    } else if line.hasPrefix("rm -rf -- ") {
      for dir in words(line.dropFirst("rm -rf -- ".count)) {
        m.directories = m.directories.filter { $0 != dir && !$0.hasPrefix(dir + "/") }
        m.files = m.files.filter { !$0.key.hasPrefix(dir + "/") }
      }
    } else if line.hasPrefix("rmdir -- ") {
      for dir in words(line.dropFirst("rmdir -- ".count)) {
        let empty =
          !m.files.keys.contains { parent($0) == dir } && !m.directories.contains { parent($0) == dir }
        if empty && dir != "/" { m.directories.remove(dir) }
      }
    }
    return []
  }

  /// Starts an instance: it needs its config (for its port), its unit or supervisor, and a free port.
  static func start(_ name: String, _ m: inout Machine) -> CommandOutput {
    guard let at = name.firstIndex(of: "@") else { return failure("bad instance \(name)") }
    let kind = String(name[..<at])
    let instance = String(name[name.index(after: at)...])
    let (conf, key) =
      kind == "rsyncd" ? (Layout.rsyncdConf(instance), "port") : (Layout.watchConf(instance), "health-port")
    let needs =
      m.systemd ? ["\(Layout.units)/fleetsync-\(kind)@.service"] : kind == "watch" ? [Layout.supervisor] : []
    for path in needs + [conf] + (kind == "watch" ? [Layout.watchBinary] : []) where m.files[path] == nil {
      return failure("\(name): \(path) is missing")
    }
    let text = String(decoding: m.files[conf] ?? [], as: UTF8.self)
    guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("\(key) = ") }),
      let port = Int(line.dropFirst(key.count + 3))
    else { return failure("\(name): no \(key) in \(conf)") }
    if m.foreignPorts.contains(port) || m.running.values.contains(port) {
      return failure("\(name): port \(port) is in use")
    }
    m.running[name] = port
    m.startedWith[name] = m.files[conf]
    return CommandOutput(status: 0, stdout: "", stderr: "")
  }

  /// The facts script's output for the node as it is.
  static func factsOutput(_ m: Machine) -> String {
    var out = "@@systemd\n\(m.systemd ? "yes" : "no")\n@@manifest\n"
    out += String(decoding: m.files[Layout.manifest] ?? [], as: UTF8.self) + "\n"
    out += "@@sysctl\n"
    for (key, value) in m.sysctl.sorted(by: { $0.key < $1.key }) { out += "\(key) \(value)\n" }
    out += "@@sysctl-writable\n\(m.sysctlReadOnly ? "no" : "yes")\n"
    out += "@@hash\n"
    for (path, bytes) in m.files.sorted(by: { $0.key < $1.key }) where isManaged(path) {
      out += "\(Digest.sha256Hex(bytes))  \(path)\n"
    }
    out += "@@listen\n  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
    for (index, port) in (m.foreignPorts.union(m.running.values)).sorted().enumerated() {
      out +=
        "   \(index): 00000000:\(String(format: "%04X", port)) 00000000:0000 0A 00000000:00000000 00:0 0 0\n"
    }
    out += "@@running\n"
    for name in m.running.keys.sorted() { out += name + "\n" }
    if let identity = m.identity { out += "@@machine\nfake-boot-id\n\(identity)\n" }
    return out + "@@end\n"
  }

  /// The files the facts script hashes.
  static func isManaged(_ path: String) -> Bool {
    path.hasPrefix("/etc/fleetsync/") || path.hasPrefix("/var/lib/fleetsync/bin/") || path == Layout.sysctl
      || path == Layout.bootScript
      || (path.hasPrefix("\(Layout.units)/fleetsync-") && path.hasSuffix(".service"))
      || (path.hasPrefix("\(Layout.units)/fleetsync-") && path.hasSuffix(".timer"))
      || path == Layout.pruneCron
      || (path.hasPrefix("\(Layout.units)/fleetsync-") && path.hasSuffix(".service.d/fleetsync-source.conf"))
  }

  /// The health wait's answer: one `name reason` line per instance that is not running.
  static func healthOutput(_ command: String, _ m: Machine) -> String {
    command.matches(of: #/echo "([^ "]+) \$\{last/#).map { String($0.1) }
      .filter { m.running[$0] == nil }
      .map { "\($0) not answering\n" }.joined()
  }

  /// The status probe's answer: the facts (when asked), the recorded module sizes, and a section
  /// per instance probed, with `healthy` when it runs.
  static func statusOutput(_ command: String, _ m: Machine) -> String {
    var out = ""
    if command.contains(HostFacts.Part.manifest) {
      let sizes = m.files.filter { $0.key.hasPrefix(ModuleSize.directory + "/") }.sorted { $0.key < $1.key }
      out = factsOutput(m) + "@@sizes\n" + String(decoding: sizes.flatMap(\.value), as: UTF8.self)
    }
    out += command.matches(of: #/@@([^'"\s]+) ([0-9]+)'/#).map { match in
      "@@\(match.1) \(match.2)\n"
        + (m.running[String(match.1)] == nil ? "" : "healthy\nrestarts 0\nuptime 5\n")
    }.joined()
    return out + "@@end\n"
  }
}

/// Connects to fake hosts by inventory name; a name in `unreachable` (or without a fake) cannot be reached.
struct FakeConnector: HostConnector {
  let hosts: [String: FakeRemoteHost]
  var unreachable: Set<String> = []

  func connect(_ host: HostRef) async throws -> any RemoteHost {
    guard !unreachable.contains(host.name), let fake = hosts[host.name] else {
      throw FleetError(
        FleetError.Code("ssh.unreachable", meaning: .unreachable), "\(host.name): no route to host (fake)")
    }
    return fake
  }
}
