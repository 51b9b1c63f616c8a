import FleetTestSupport
import FleetWatch
import FleetWire
import Foundation
import Logging
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// All engine integration suites, one test at a time. Every test runs an engine, so it depends on the
/// machine-wide inotify limits; the few that lower one say so and run alone (see ``InotifyLimits``).
@Suite("Watch engine integration", .serialized, .dependsOnInotifyLimits, .enabled(if: hasRsync))
enum WatchIntegration {}

/// Whether the tests run as root (needed for sysctl changes and a root-owned password file).
let isRoot = getuid() == 0

/// Whether an rsync binary is installed.
let hasRsync = FileManager.default.isExecutableFile(atPath: "/usr/bin/rsync")

/// A fresh temporary directory, removed by ``remove()``.
struct TempDir {
  let path: String

  init(_ label: String = "fleetwatch") throws {
    var template = Array("/tmp/\(label).XXXXXX".utf8CString)
    guard let p = mkdtemp(&template) else { throw POSIXErrorBox(errno) }
    path = String(cString: p)
  }

  func sub(_ name: String) throws -> String {
    let p = path + "/" + name
    try FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
    return p
  }

  func remove() { try? FileManager.default.removeItem(atPath: path) }
}

struct POSIXErrorBox: Error, CustomStringConvertible {
  let code: Int32
  let context: String?
  init(_ code: Int32, _ context: String? = nil) {
    self.code = code
    self.context = context
  }
  var description: String { (context.map { $0 + ": " } ?? "") + String(cString: strerror(code)) }
}

/// A real rsync daemon on 127.0.0.1 with one writable module that needs a user and password.
/// Owned by one test; not shared across tasks.
final class RsyncDaemon {
  let dir: TempDir
  let backup: String
  let port: Int
  let module = "backup"
  let user = "fleet"
  /// A password no other string in the tests contains, so a leak is found by grepping for it.
  let password = "pw-\(UInt64.random(in: 1_000_000_000...9_999_999_999))-zq"
  let passwordFile: String
  let confPath: String
  private var process: Process?

  /// `runAs` names a user (and its primary group) the daemon writes as, like a provisioned daemon
  /// (`uid = nobody`); the module directory is then theirs. Otherwise it writes as the test's user.
  /// `moduleLines` are added to the module's section (e.g. ``contractModuleLines``).
  ///
  /// `versions` adds the module lines `fleetsync up` renders for versions: `fake super`, the
  /// daemon filter (``FleetWire/VersionsLayout/daemonFilter``) and the read-only module
  /// ``versionsModule`` over the versions directory. `fakeSuper` keeps owners, groups, modes and
  /// special files in xattrs, as provisioned modules do.
  init(
    password daemonPassword: String? = nil, runAs: String? = nil, moduleLines: [String] = [],
    versions: Bool = false, fakeSuper: Bool = false
  ) throws {
    dir = try TempDir("fleetwatch-daemon")
    backup = try dir.sub("backup")
    var ids = (uid: getuid(), gid: getgid())
    if let runAs {
      guard let pw = getpwnam(runAs) else { throw POSIXErrorBox(ENOENT, "no user \(runAs)") }
      ids = (pw.pointee.pw_uid, pw.pointee.pw_gid)
      guard chown(dir.path, 0, 0) == 0, chmod(dir.path, 0o755) == 0, chown(backup, ids.uid, ids.gid) == 0
      else {
        throw POSIXErrorBox(errno, "chown \(backup) to \(runAs)")
      }
    }
    port = LocalPorts.free()
    let secrets = dir.path + "/secrets"
    try "\(user):\(daemonPassword ?? password)\n".write(toFile: secrets, atomically: true, encoding: .utf8)
    chmod(secrets, 0o600)
    passwordFile = dir.path + "/client-password"
    try "\(password)\n".write(toFile: passwordFile, atomically: true, encoding: .utf8)
    chmod(passwordFile, 0o600)
    confPath = dir.path + "/rsyncd.conf"
    let conf = """
      pid file = \(dir.path)/rsyncd.pid
      lock file = \(dir.path)/rsyncd.lock
      log file = \(dir.path)/rsyncd.log
      use chroot = no
      munge symlinks = no
      uid = \(ids.uid)
      gid = \(ids.gid)
      max connections = 32
      socket options = TCP_NODELAY
      [\(module)]
        path = \(backup)
        read only = no
        auth users = \(user)
        secrets file = \(secrets)
        strict modes = yes
        hosts allow = 127.0.0.1
        fake super = \(fakeSuper ? "yes" : "no")
      \(moduleLines.map { "  " + $0 + "\n" }.joined())
      """ + (versions ? Self.versionsLines(module: module, path: backup, secrets: secrets, user: user) : "")
    try conf.write(toFile: confPath, atomically: true, encoding: .utf8)
    try start()
  }

  /// The lines issue 10's contract gives every provisioned module: metadata kept in xattrs, and
  /// versions hidden from clients except the prune-hold markers.
  static let contractModuleLines = ["fake super = yes", VersionsLayout.daemonFilter]
  /// The read-only module over the versions directory (`[backup.versions]`).
  var versionsModule: String { "\(module).versions" }

  static func versionsLines(module: String, path: String, secrets: String, user: String) -> String {
    """
      fake super = yes
      \(VersionsLayout.daemonFilter)
    [\(module).versions]
      path = \(path)/\(VersionsLayout.directory)
      read only = yes
      fake super = yes
      auth users = \(user)
      secrets file = \(secrets)
      strict modes = yes
      hosts allow = 127.0.0.1

    """
  }

  /// The target URL for the engine.
  var target: RsyncTarget {
    RsyncTarget(user: user, host: "127.0.0.1", port: port, module: module)
  }

  /// Starts the daemon and waits until it accepts connections; throws if it exits first (its
  /// port was taken meanwhile) or never listens.
  func start() throws {
    unlink(dir.path + "/rsyncd.pid")
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/rsync")
    p.arguments = [
      "--daemon", "--no-detach", "--config=\(confPath)", "--port=\(port)", "--address=127.0.0.1",
    ]
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    process = p
    try waitForBlocking("the rsync daemon to listen on port \(port)") {
      !p.isRunning || LocalPorts.canConnect(port: port)
    }
    guard p.isRunning else {
      throw POSIXErrorBox(ECONNREFUSED, "rsync --daemon on port \(port) exited with \(p.terminationStatus)")
    }
  }

  /// Stops the daemon (SIGTERM) and waits for it.
  func stop() {
    guard let p = process else { return }
    p.terminate()
    p.waitUntilExit()
    process = nil
  }

  deinit {
    stop()
    dir.remove()
  }

}

/// Differences between `source` and `backup` as rsync sees them (content by checksum, type,
/// permissions, symlinks, deletions); empty when the backup is an exact copy.
///
/// The backup's `/.fleetsync-versions/` is never part of the mirror (versions, and the prune hold a
/// mass-change alarm writes there), so it is left out, as `fleetsync verify` leaves it out.
func treeDifferences(_ source: String, _ backup: String, excludes: [String] = []) throws -> String {
  let p = Process()
  p.executableURL = URL(fileURLWithPath: "/usr/bin/rsync")
  p.arguments =
    ["-rcn", "-lp", "--delete", "--itemize-changes", "--exclude=/.fleetsync-versions/"]
    + excludes.map { "--exclude=\($0)" } + [
      source + "/", backup + "/",
    ]
  let out = Pipe()
  p.standardOutput = out
  p.standardError = out
  try p.run()
  let data = out.fileHandleForReading.readDataToEndOfFile()
  p.waitUntilExit()
  let text = String(decoding: data, as: UTF8.self)
  if p.terminationStatus != 0 { return "rsync exit \(p.terminationStatus): \(text)" }
  return text
}

/// Waits until the backup equals the source and the engine is idle (nothing queued or in flight, the
/// initial sync over) before and after the comparison, or `deadline` passes.
///
/// Returns the remaining differences ("" on success).
func waitForConvergence(
  _ engine: WatchEngine, _ source: String, _ backup: String, deadline: Duration = Wait.deadline,
  excludes: [String] = []
) async throws -> String {
  func idle() -> Bool {
    let s = engine.status()
    return s.queueDepth == 0 && s.inFlight == 0 && s.state != .starting && s.state != .initialSync
  }
  var diff = "(not compared: the engine never was idle)"
  let converged = try await eventually(within: deadline, every: .milliseconds(200)) {
    guard idle() else { return false }
    diff = try treeDifferences(source, backup, excludes: excludes)
    return diff.isEmpty && idle()
  }
  if converged { return "" }
  return diff.isEmpty ? "timed out with work still queued: \(engine.status())" : diff
}

/// Expects convergence (see ``waitForConvergence(_:_:_:deadline:excludes:)``), showing the differences if not.
func expectConverged(
  _ engine: WatchEngine, _ source: String, _ backup: String, deadline: Duration = Wait.deadline,
  excludes: [String] = [], sourceLocation: SourceLocation = #_sourceLocation
) async throws {
  let diff = try await waitForConvergence(engine, source, backup, deadline: deadline, excludes: excludes)
  #expect(diff.isEmpty, "backup differs from source: \(diff)", sourceLocation: sourceLocation)
}

/// A logger for engines under test: warnings and errors only.
func quietLogger() -> Logger {
  var logger = Logger(label: "fleetwatch.test")
  logger.logLevel = .warning
  return logger
}

/// An engine running in a task, for a test.
struct RunningEngine {
  let engine: WatchEngine
  let task: Task<Void, any Error>

  static func start(_ config: WatchConfig) throws -> RunningEngine {
    start(try WatchEngine(config: config, logger: quietLogger()))
  }

  static func start(_ engine: WatchEngine) -> RunningEngine {
    RunningEngine(engine: engine, task: Task { try await engine.run() })
  }

  /// Cancels the engine and waits for `run()` to return.
  func stop() async throws {
    task.cancel()
    try await task.value
  }

  /// Waits until the initial full sync is over; throws ``WaitTimeout`` if it never is.
  func waitWatching() async throws {
    let watching = try await eventually(every: .milliseconds(50)) {
      let s = engine.status()
      return s.fullSyncs > 0 && s.state != .initialSync && s.state != .starting
    }
    guard watching else {
      throw WaitTimeout(what: "the initial full sync to finish (status: \(engine.status()))")
    }
  }
}

/// The event backend engine tests run with: `FLEETSYNC_TEST_BACKEND` (`inotify` unless set), so the
/// suite runs once per backend (the README's test command runs the engine suites with each).
let testBackend: EventBackend = {
  let name = ProcessInfo.processInfo.environment["FLEETSYNC_TEST_BACKEND"] ?? "inotify"
  guard let backend = EventBackend(rawValue: name) else {
    fatalError("FLEETSYNC_TEST_BACKEND must be \(EventBackend.choices), not \(name)")
  }
  return backend
}()

/// Makes an engine config for `source` replicating into `daemon`, with the ``testBackend``.
func makeConfig(source: String, daemon: RsyncDaemon, state: String) -> WatchConfig {
  var c = WatchConfig(source: source, target: daemon.target, stateDir: state)
  c.backend = testBackend
  c.passwordFile = daemon.passwordFile
  c.batchDelay = .milliseconds(50)
  c.retryInitial = .milliseconds(200)
  c.retryMax = .seconds(2)
  // Generous: a loaded machine must make a transfer slow, not failed.
  c.ioTimeout = .seconds(60)
  c.connectTimeout = .seconds(30)
  return c
}

/// What most engine tests set up: an rsync daemon, a temporary directory with `src` and `state`,
/// a config replicating `src` into the daemon (see ``makeConfig(source:daemon:state:)``), and,
/// after ``start()`` or ``launch()``, the engine running it.
///
/// Between `init` and `start()` a test fills `src` and adjusts `config`. The temporary directory
/// is removed when the fixture goes away, the daemon stops with it; ``stop()`` stops the engine.
final class EngineFixture {
  let daemon: RsyncDaemon
  let tmp: TempDir
  let src: String
  let state: String
  var config: WatchConfig
  private var running: RunningEngine?

  /// Starts a daemon (wanting `daemonPassword` if given, writing as `runAs`, with the versions
  /// module lines if `versions` and fake super if `fakeSuper`, see
  /// ``RsyncDaemon/init(password:runAs:moduleLines:versions:fakeSuper:)``; `moduleLines` go into the
  /// module's section) and makes the directories
  /// and the config; no engine runs yet.
  init(
    daemonPassword: String? = nil, runAs: String? = nil, fakeSuper: Bool = false, versions: Bool = false,
    moduleLines: [String] = []
  ) throws {
    daemon = try RsyncDaemon(
      password: daemonPassword, runAs: runAs, moduleLines: moduleLines, versions: versions,
      fakeSuper: fakeSuper)
    tmp = try TempDir()
    do {
      src = try tmp.sub("src")
      state = try tmp.sub("state")
    } catch {
      tmp.remove()
      throw error
    }
    config = makeConfig(source: src, daemon: daemon, state: state)
  }

  deinit { tmp.remove() }

  /// The running engine; only after ``launch()`` or ``start()``.
  var engine: WatchEngine {
    guard let running else { preconditionFailure("EngineFixture: launch() or start() the engine first") }
    return running.engine
  }

  /// Starts an engine on ``config`` without waiting for anything.
  func launch() throws {
    running = try RunningEngine.start(config)
  }

  /// Starts an engine on ``config`` and waits until its initial full sync is over.
  func start() async throws {
    try launch()
    try await waitWatching()
  }

  /// Waits until the launched engine's initial full sync is over; expects the backend asked for.
  func waitWatching(sourceLocation: SourceLocation = #_sourceLocation) async throws {
    try await running?.waitWatching()
    guard config.backend != .auto, let running else { return }
    let backend = running.engine.status().eventBackend
    #expect(
      backend == config.backend.rawValue, "events from \(backend ?? "nothing")",
      sourceLocation: sourceLocation)
  }

  /// Cancels the engine and waits for it to return.
  func stop() async throws {
    try await running?.stop()
  }

  /// Expects the daemon's backup to converge to `src` with the running engine (see
  /// ``expectConverged(_:_:_:deadline:excludes:sourceLocation:)``).
  func expectConverged(
    deadline: Duration = Wait.deadline, excludes: [String] = [],
    sourceLocation: SourceLocation = #_sourceLocation
  ) async throws {
    try await IntegrationTests.expectConverged(
      engine, src, daemon.backup, deadline: deadline, excludes: excludes, sourceLocation: sourceLocation)
  }
}

/// File helpers that take names as raw bytes (non-UTF-8 names must work).
enum FS {
  static func cPath(_ bytes: [UInt8]) -> [CChar] { bytes.map { CChar(bitPattern: $0) } + [0] }

  static func path(_ base: String, _ rel: [UInt8]) -> [UInt8] { Array(base.utf8) + [UInt8(ascii: "/")] + rel }

  static func write(_ path: [UInt8], _ data: [UInt8], append: Bool = false) throws {
    let fd = open(cPath(path), O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC) | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw POSIXErrorBox(errno) }
    defer { close(fd) }
    var off = 0
    while off < data.count {
      let n = data[off...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
      guard n > 0 else { throw POSIXErrorBox(errno) }
      off += n
    }
  }

  static func write(_ base: String, _ rel: String, _ text: String, append: Bool = false) throws {
    try write(path(base, Array(rel.utf8)), Array(text.utf8), append: append)
  }

  static func mkdir(_ base: String, _ rel: String) throws {
    try FileManager.default.createDirectory(atPath: base + "/" + rel, withIntermediateDirectories: true)
  }

  static func rename(_ from: String, _ to: String) throws {
    guard Glibc.rename(from, to) == 0 else { throw POSIXErrorBox(errno) }
  }
}

/// A small deterministic generator (SplitMix64) so a failing random test can be replayed.
struct SeededGenerator: RandomNumberGenerator {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// Writes an rsync wrapper into `dir` that copies every `--files-from` list into `listDir` (one
/// file per run) and then runs the real rsync; returns its path.
func listKeepingRsync(in dir: String, keepingListsIn listDir: String) throws -> String {
  let path = dir + "/rsync-keeping-lists"
  let script = """
    #!/bin/sh
    for arg in "$@"; do
      case "$arg" in
        --files-from=*) cp "${arg#--files-from=}" "$(mktemp '\(listDir)/list.XXXXXX')" || exit 99 ;;
      esac
    done
    exec /usr/bin/rsync "$@"

    """
  try script.write(toFile: path, atomically: true, encoding: .utf8)
  guard chmod(path, 0o755) == 0 else { throw POSIXErrorBox(errno) }
  return path
}

/// The path lists kept by ``listKeepingRsync(in:keepingListsIn:)``: one per rsync run, each path as bytes.
func keptLists(_ listDir: String) throws -> [[[UInt8]]] {
  try FileManager.default.contentsOfDirectory(atPath: listDir).map { name in
    let data = try Data(contentsOf: URL(fileURLWithPath: listDir + "/" + name))
    return data.split(separator: 0, omittingEmptySubsequences: true).map { Array($0) }
  }
}

extension EngineFixture {
  /// Starts the engine with `knob` (an event queue limit, read when the engine's inotify instance or
  /// fanotify group is made) at 16, then writes bursts of 40 directories of 10 files, far beyond 16
  /// queued events, until the engine has seen an overflow (whether one burst outruns the reader depends
  /// on the machine); expects convergence and the reconciling full sync after it.
  func overflowAndReconcile(_ knob: InotifyLimits.Knob, sourceLocation: SourceLocation = #_sourceLocation)
    async throws
  {
    try await InotifyLimits.with(knob, 16) {
      try launch()
      try await waitFor("the engine's event queue", every: .milliseconds(10)) {
        engine.status().watchSetupSeconds != nil
      }
    }
    try await waitWatching()
    let full = engine.status().fullSyncs
    var made = 0
    try await waitFor("an event queue overflow") {
      for _ in 0..<40 {
        try FS.mkdir(src, "burst\(made)/inner")
        for j in 0..<10 { try FS.write(src, "burst\(made)/inner/f\(j)", "\(made)-\(j)") }
        made += 1
      }
      return engine.status().overflows > 0
    }
    try await expectConverged(sourceLocation: sourceLocation)
    // The reconciling full sync may still run once the tree is converged and the queue empty.
    let reconciled = try await eventually { self.engine.status().fullSyncs > full }
    #expect(
      reconciled, "full syncs: \(engine.status().fullSyncs), before the overflow: \(full)",
      sourceLocation: sourceLocation)
  }
}
