import CLandlock
import Foundation
import Testing

@testable import FleetWatch

#if canImport(Glibc)
  import Glibc
#endif

/// The sender's sandbox on real files, with `cat` standing in for rsync: it reads what the sandbox
/// allows and nothing else.
@Suite("Sender sandbox", .enabled(if: SenderSandbox.kernelABI >= 1))
struct SenderSandboxTests {
  /// `src/inside`, `src/link -> outside`, `outside/shadow` (0600) and a list and a password file.
  final class Scratch {
    let root: String
    var config: WatchConfig

    init() throws {
      root = try makeTempDir()
      let fm = FileManager.default
      try fm.createDirectory(atPath: root + "/src", withIntermediateDirectories: true)
      try fm.createDirectory(atPath: root + "/outside", withIntermediateDirectories: true)
      try Data("inside\n".utf8).write(to: URL(fileURLWithPath: root + "/src/inside"))
      try Data("outside\n".utf8).write(to: URL(fileURLWithPath: root + "/outside/shadow"))
      chmod(root + "/outside/shadow", 0o600)
      try Data("listed\n".utf8).write(to: URL(fileURLWithPath: root + "/list"))
      try Data("password\n".utf8).write(to: URL(fileURLWithPath: root + "/password"))
      try fm.createSymbolicLink(atPath: root + "/src/link", withDestinationPath: root + "/outside")
      config = WatchConfig(
        source: root + "/src", target: RsyncTarget(user: "u", host: "h", port: 873, module: "m"),
        stateDir: root + "/state")
      config.passwordFile = root + "/password"
      config.rsyncPath = "cat"
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    /// Runs `cat paths...` confined by the sandbox for ``config``, allowed to read `reading` too.
    func cat(_ paths: [String], reading: [String] = []) async throws -> ConfinedProcess.Result {
      guard case .confined(let sandbox) = SenderSandbox.prepare(config) else {
        throw CancellationError()
      }
      let (ruleset, executable) = try await sandbox.ruleset(reading: reading)
      return try await ConfinedProcess.run(
        executable: executable, arguments: paths, ruleset: ruleset, tailCapacity: 1 << 16)
    }
  }

  @Test func readsTheSourceTheListAndThePasswordFile() async throws {
    let s = try Scratch()
    let r = try await s.cat(
      [s.root + "/src/inside", s.root + "/list", s.root + "/password"], reading: [s.root + "/list"])
    #expect(r.termination == .exited(0), "\(r.stderr.text)")
    #expect(r.stdout.text == "inside\nlisted\npassword\n")
  }

  @Test func refusesAFileOutsideTheSourceByPathOrThroughASymlink() async throws {
    let s = try Scratch()
    for path in [s.root + "/outside/shadow", s.root + "/src/link/shadow", s.root + "/list"] {
      let r = try await s.cat([path])
      #expect(r.termination == .exited(1), "\(path)")
      #expect(r.stdout.text.isEmpty, "\(path)")
      #expect(r.stderr.text.contains("Permission denied"), "\(path): \(r.stderr.text)")
    }
  }

  @Test func refusesSecretsInEtc() async throws {
    let s = try Scratch()
    let r = try await s.cat(["/etc/shadow", "/etc/passwd"])
    #expect(r.stderr.text.contains("/etc/shadow: Permission denied"), "\(r.stderr.text)")
    // What users and groups resolve from stays readable.
    #expect(r.stdout.text.contains("root:"))
  }

  @Test func writesNothingNotEvenInTheSource() async throws {
    let s = try Scratch()
    s.config.rsyncPath = "cp"
    guard case .confined(let sandbox) = SenderSandbox.prepare(s.config) else {
      Issue.record("cp cannot run in the sandbox")
      return
    }
    let (ruleset, executable) = try await sandbox.ruleset(reading: [])
    let r = try await ConfinedProcess.run(
      executable: executable, arguments: [s.root + "/src/inside", s.root + "/src/copy"], ruleset: ruleset,
      tailCapacity: 1 << 16)
    #expect(r.termination == .exited(1))
    #expect(r.stderr.text.contains("Permission denied"), "\(r.stderr.text)")
    #expect(access(s.root + "/src/copy", F_OK) != 0)
  }

  @Test func aWrapperScriptRunsUnconfinedAndSaysWhy() throws {
    let s = try Scratch()
    let script = s.root + "/rsync-wrapper"
    try Data("#!/bin/sh\nexec rsync \"$@\"\n".utf8).write(to: URL(fileURLWithPath: script))
    chmod(script, 0o755)
    s.config.rsyncPath = script
    guard case .unconfined(let reason) = SenderSandbox.prepare(s.config) else {
      Issue.record("a script cannot run in the sandbox")
      return
    }
    #expect(reason.contains("wrapper script"))
  }

  @Test func findsTheLibraryDirectoriesInTheLoaderTrace() {
    let trace = """
      \tlinux-vdso.so.1 (0x00007ffd)
      \tlibacl.so.1 => /lib/x86_64-linux-gnu/libacl.so.1 (0x00007f1)
      \tlibz.so.1 => /usr/lib/x86_64-linux-gnu/libz.so.1 (0x00007f2)
      \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f3)
      \t/lib64/ld-linux-x86-64.so.2 (0x00007f4)
      """
    #expect(
      SenderSandbox.libraryDirectories(inTrace: trace) == [
        "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64",
      ])
  }
}

/// What a spawned program inherits from the spawning thread.
@Suite("Confined spawn")
struct ConfinedSpawnTests {
  /// libdispatch blocks the signals it reads through a signalfd in the threads that received one;
  /// rsync started from such a thread must still stop on SIGTERM.
  @Test func theProgramStartsWithNoSignalBlocked() throws {
    var block = sigset_t()
    sigemptyset(&block)
    sigaddset(&block, SIGTERM)
    sigaddset(&block, SIGUSR2)
    var old = sigset_t()
    pthread_sigmask(SIG_BLOCK, &block, &old)
    var out: [Int32] = [-1, -1]
    #expect(pipe(&out) == 0)
    let words: [String] = ["/bin/grep", "SigBlk", "/proc/self/status"]
    let argv: [UnsafeMutablePointer<CChar>?] = words.map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    var step = FLEET_SPAWN_OK.rawValue
    let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
    let rc = fleet_spawn(&pid, &step, "/bin/grep", argv, environ, devNull, out[1], 2, -1, 0)
    pthread_sigmask(SIG_SETMASK, &old, nil)
    close(devNull)
    close(out[1])
    #expect(rc == 0)
    var bytes = [UInt8](repeating: 0, count: 256)
    let n = read(out[0], &bytes, bytes.count)
    close(out[0])
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    let line = String(decoding: bytes.prefix(max(0, n)), as: UTF8.self)
    #expect(line.hasPrefix("SigBlk:"), "\(line)")
    #expect(line.hasSuffix("0000000000000000\n"), "the child started with signals blocked: \(line)")
  }
}
