import FleetCore
import FleetInventory
import Foundation
import Synchronization

@testable import FleetProvision

/// One step a ``FakeRemoteHost`` carried out, in the order it saw them.
enum FakeStep: Equatable, Sendable {
  /// The facts script ran.
  case facts
  /// A small file was read.
  case read(String)
  /// The directories script ran.
  case makeDirectories
  /// A file was written or uploaded (the path).
  case write(String)
  /// `systemctl daemon-reload`.
  case reloadUnits
  /// `sysctl -p` of fleetsync's drop-in.
  case applySysctl
  /// A service instance (`kind@instance`) was stopped, started or restarted.
  case stop(String)
  case start(String)
  case restart(String)
  /// Files were removed.
  case remove([String])
  /// A kernel setting was written back by `down`.
  case restoreSysctl(String)
  /// `down`'s directory clean-up ran.
  case removeDirectories
  /// The health wait ran.
  case health
  /// The status probe ran.
  case status
  /// The run's lease on the node was taken, renewed or given up (``NodeLease``).
  case lease
  /// The boot script (hosts without systemd) was enabled or disabled with `update-rc.d`.
  case bootScript(enabled: Bool)
  /// `fleetsync-watch resume` ran for this watcher config, with these flags.
  case resume(config: String, flags: [String])
  /// The backup modules' user xattr check ran (``ModuleXattrCheck``).
  case xattrCheck
  /// A command the fake does not know (a test that sees one fails).
  case unknown(String)

  /// Whether the step changes the host (the lease is the run's bookkeeping, not a change).
  var mutates: Bool {
    switch self {
    case .facts, .read, .health, .status, .lease, .resume, .xattrCheck, .unknown: false
    default: true
    }
  }
}

/// An in-memory node that understands the commands provisioning sends: it keeps files, directories,
/// running instances and kernel settings, answers the facts script from them, and can be made to
/// fail a step (exit 1, the host stays reachable) or to lose the connection at a step.
final class FakeRemoteHost: RemoteHost {
  /// What the node holds.
  struct Machine {
    var systemd = false
    var files: [String: [UInt8]] = [:]
    var directories: Set<String> = [
      "/", "/etc", "/etc/init.d", "/etc/sysctl.d", "/etc/systemd", "/etc/systemd/system", "/var", "/var/lib",
      "/var/log",
      "/run", "/srv",
    ]
    var sysctl = [
      "fs.inotify.max_user_watches": 8192, "fs.inotify.max_user_instances": 128,
      "fs.inotify.max_queued_events": 16384,
    ]
    /// /proc/sys is read-only (a container): writing a kernel setting fails.
    var sysctlReadOnly = false
    /// Module paths whose filesystem cannot store user xattrs (``ModuleXattrCheck``).
    var noUserXattrs: Set<String> = []
    /// The node's record of the data directories fleetsync created (``CreatedDataDirectories``).
    var createdData: Set<String> = []
    /// Ports other programs listen on.
    var foreignPorts: Set<Int> = [22]
    /// The boot script is enabled (its rc links exist).
    var bootEnabled = false
    /// Running instances (`kind@instance`) and the port each listens on.
    var running: [String: Int] = [:]
    /// The config file each running instance was (re)started with, as it read it then.
    var startedWith: [String: [UInt8]] = [:]
    /// Every step, in order.
    var steps: [FakeStep] = []
    /// The manifest as written by each manifest write, in order.
    var manifestWrites: [Manifest] = []
    /// Mutating steps seen so far (for ``FakeRemoteHost/loseConnection(atStep:)``).
    var mutations = 0
    /// The connection is lost at this mutating step (1-based, counted from the start).
    var loseConnectionAt: Int?
    var connectionLost = false
    /// What the facts script reports as the machine's identity (`/etc`'s device and inode); nil:
    /// the node does not tell.
    var identity: String? = UUID().uuidString
    /// Steps that fail with exit 1.
    var failing: (@Sendable (FakeStep) -> Bool)?
  }

  let name: String
  let machine: Mutex<Machine>
  /// The node's lease file: a real file, so the real lease script runs on it (see ``runLease(_:)``).
  let leaseFile = NSTemporaryDirectory() + "fleetsync-fake-lease-\(UUID().uuidString)"

  init(name: String, systemd: Bool = false) {
    self.name = name
    var machine = Machine()
    machine.systemd = systemd
    self.machine = Mutex(machine)
  }

  /// A copy of the node's state.
  var state: Machine { machine.withLock { $0 } }

  /// Changes the node directly (not through provisioning).
  func change(_ body: (inout Machine) -> Void) { machine.withLock { body(&$0) } }

  /// Loses the connection at the `k`-th mutating step from now: that step and every later one throw.
  func loseConnection(atStep k: Int) {
    machine.withLock {
      $0.loseConnectionAt = $0.mutations + k
      $0.connectionLost = false
    }
  }

  /// Makes every step that `matches` fail with exit status 1.
  func failSteps(matching matches: @escaping @Sendable (FakeStep) -> Bool) {
    machine.withLock { $0.failing = matches }
  }

  /// Ends injected failures and forgets the steps seen so far.
  func heal() {
    machine.withLock {
      $0.loseConnectionAt = nil
      $0.connectionLost = false
      $0.failing = nil
      $0.steps = []
      $0.manifestWrites = []
    }
  }

  // MARK: RemoteHost

  func run(_ command: String) async throws -> CommandOutput {
    try machine.withLock { m in
      let step = Self.classify(command)
      try Self.admit(step, &m)
      if case .unknown(let line) = step {
        return CommandOutput(status: 127, stdout: "", stderr: "fake host: unknown command: \(line)")
      }
      if m.failing?(step) == true {
        return CommandOutput(status: 1, stdout: "", stderr: "fake host: \(step) failed as asked")
      }
      if step == .lease { return try runLease(command) }
      return Self.execute(step, command, &m)
    }
  }

  func write(_ bytes: [UInt8], to path: String, mode: Int) async throws {
    try machine.withLock { m in try Self.store(bytes, at: path, &m) }
  }

  func upload(localPath: String, to path: String, mode: Int) async throws {
    guard let data = FileManager.default.contents(atPath: localPath) else {
      throw FleetError(.io, "fake host: cannot read local \(localPath)")
    }
    try machine.withLock { m in try Self.store(Array(data), at: path, &m) }
  }

  func read(_ path: String) async throws -> [UInt8]? {
    try machine.withLock { m in
      try Self.admit(.read(path), &m)
      return m.files[path]
    }
  }

  func close() async {}

  // MARK: Steps

  /// Records `step`, and throws when the connection is (or gets) lost at it.
  static func admit(_ step: FakeStep, _ m: inout Machine) throws {
    if step.mutates {
      m.mutations += 1
      if let at = m.loseConnectionAt, m.mutations >= at { m.connectionLost = true }
    }
    if m.connectionLost { throw FleetError(.io, "fake host: connection lost") }
    m.steps.append(step)
  }

  static func store(_ bytes: [UInt8], at path: String, _ m: inout Machine) throws {
    let step = FakeStep.write(path)
    try admit(step, &m)
    if m.failing?(step) == true { throw FleetError(.io, "fake host: writing \(path) failed as asked") }
    guard m.directories.contains(parent(path)) else {
      throw FleetError(.io, "fake host: \(parent(path)) does not exist (writing \(path))")
    }
    m.files[path] = bytes
    if path == Layout.manifest, let manifest = try? JSONDecoder().decode(Manifest.self, from: Data(bytes)) {
      m.manifestWrites.append(manifest)
    }
  }

  /// Runs the lease script with `sh` on this node's real lease file instead of ``NodeLease/path``.
  func runLease(_ command: String) throws -> CommandOutput {
    let script = command.replacingOccurrences(
      of: try ShellQuote.quote(NodeLease.path), with: try ShellQuote.quote(leaseFile))
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", script]
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    process.waitUntilExit()
    return CommandOutput(
      status: process.terminationStatus,
      stdout: String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self),
      stderr: String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
  }

  static func parent(_ path: String) -> String {
    let dir = (path as NSString).deletingLastPathComponent
    return dir.isEmpty ? "/" : dir
  }
}
