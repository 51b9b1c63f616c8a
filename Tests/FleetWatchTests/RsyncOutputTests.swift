import FleetCore
import Foundation
import Testing

@testable import FleetWatch

#if canImport(Glibc)
  import Glibc
#endif

/// rsync runs are classified by how they ended, however much they print; "cannot run rsync" only
/// when rsync cannot be started. The rsync here is a shell script that prints several MB.
@Suite("rsync output beyond the subprocess limit")
struct RsyncOutputTests {
  /// Noise per stream: more than the 1 MB (stdout) and 4 MB (stderr) the runner once collected.
  static let noiseBytes = 6 << 20

  /// A scratch directory with a fake rsync in it.
  struct Scratch {
    let dir: String

    init() throws {
      var template = Array("/tmp/fleetwatch-rsync.XXXXXX".utf8CString)
      guard let p = mkdtemp(&template) else { throw FleetError(.io, "mkdtemp failed") }
      dir = String(cString: p)
    }

    func remove() { try? FileManager.default.removeItem(atPath: dir) }

    /// Writes a script that prints `noiseBytes` of lines to stdout and to stderr, then `stdoutEnd`
    /// and `stderrEnd`, and exits with `code`; returns its path.
    func fakeRsync(stdoutEnd: String, stderrEnd: String, exit code: Int32, mode: mode_t = 0o755) throws
      -> String
    {
      let path = dir + "/rsync"
      let script = """
        #!/bin/sh
        yes 'skipping non-regular file "some/long/path/in/the/tree"' | head -c \(RsyncOutputTests.noiseBytes)
        printf '%s' '\(stdoutEnd)'
        yes 'file has vanished: "/src/some/long/path/in/the/tree"' | head -c \(RsyncOutputTests.noiseBytes) >&2
        printf '%s' '\(stderrEnd)' >&2
        exit \(code)

        """
      try Data(script.utf8).write(to: URL(fileURLWithPath: path))
      chmod(path, mode)
      return path
    }

    func command(rsyncPath: String) -> RsyncCommand {
      var config = WatchConfig(
        source: dir, target: RsyncTarget(user: "u", host: "h", port: 873, module: "data"), stateDir: dir)
      config.rsyncPath = rsyncPath
      return RsyncCommand(config: config)
    }
  }

  static let stats = "\nNumber of regular files transferred: 7\nTotal transferred file size: 1,234 bytes\n"

  @Test func aSuccessfulRunIsReadFromTheTailOfItsOutput() async throws {
    let scratch = try Scratch()
    defer { scratch.remove() }
    let rsync = try scratch.fakeRsync(stdoutEnd: Self.stats, stderrEnd: "", exit: 0)
    let outcome = await scratch.command(rsyncPath: rsync).run(arguments: [])
    #expect(outcome == .ok(files: 7, bytes: 1234))
  }

  @Test func aPartialRunStaysPartial() async throws {
    let scratch = try Scratch()
    defer { scratch.remove() }
    let rsync = try scratch.fakeRsync(
      stdoutEnd: Self.stats,
      stderrEnd: "\nrsync warning: some files vanished before they could be transferred\n",
      exit: 24)
    let outcome = await scratch.command(rsyncPath: rsync).run(arguments: [])
    #expect(outcome.errorKind == .partial, "\(outcome)")
  }

  @Test func aFailedRunIsClassifiedByItsExitStatusWithTheLastErrorLine() async throws {
    let scratch = try Scratch()
    defer { scratch.remove() }
    let rsync = try scratch.fakeRsync(
      stdoutEnd: "", stderrEnd: "\nrsync: failed to connect to h: Connection refused (111)\n", exit: 10)
    let outcome = await scratch.command(rsyncPath: rsync).run(arguments: [])
    #expect(outcome.errorKind == .unreachable, "\(outcome)")
    #expect(outcome.message?.contains("Connection refused (111)") == true, "\(outcome)")
    #expect(outcome.message?.contains("install rsync") == false)
  }

  @Test func aMissingRsyncCannotRun() async throws {
    let scratch = try Scratch()
    defer { scratch.remove() }
    for rsync in [scratch.dir + "/no-such-rsync", "fleetsync-no-such-rsync"] {
      let outcome = await scratch.command(rsyncPath: rsync).run(arguments: [])
      #expect(outcome.errorKind == .io)
      #expect(outcome.message?.contains("cannot run rsync ('\(rsync)')") == true, "\(outcome)")
      #expect(outcome.message?.contains("install rsync or set rsyncPath") == true)
    }
  }

  @Test func aNonExecutableRsyncCannotRun() async throws {
    let scratch = try Scratch()
    defer { scratch.remove() }
    let rsync = try scratch.fakeRsync(stdoutEnd: "", stderrEnd: "", exit: 0, mode: 0o644)
    let outcome = await scratch.command(rsyncPath: rsync).run(arguments: [])
    #expect(outcome.errorKind == .io)
    #expect(outcome.message?.contains("cannot run rsync") == true, "\(outcome)")
  }
}

@Suite("Output tail")
struct OutputTailTests {
  static func tail(_ chunks: [String], capacity: Int) -> OutputTail {
    var tail = OutputTail(capacity: capacity)
    for chunk in chunks {
      Array(chunk.utf8).withUnsafeBytes { tail.append($0) }
    }
    return tail
  }

  @Test func keepsEverythingThatFits() {
    let tail = Self.tail(["one\n", "two"], capacity: 16)
    #expect(tail.text == "one\ntwo")
    #expect(tail.dropped == 0)
  }

  @Test func keepsTheLastWholeLinesWithinItsCapacity() {
    let chunks = (0..<1000).map { "line \($0)\n" }
    let tail = Self.tail(chunks, capacity: 32)
    #expect(tail.bytes.count <= 32)
    #expect(tail.text.hasPrefix("line "))
    #expect(tail.text.hasSuffix("line 998\nline 999\n"))
    #expect(tail.dropped > 0)
  }
}
