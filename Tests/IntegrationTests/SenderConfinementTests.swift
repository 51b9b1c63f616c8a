import FleetTestSupport
import Foundation
import Testing

@testable import FleetWatch

#if canImport(Glibc)
  import Glibc
#endif

/// Whether this kernel has Landlock, which confines the rsync sender.
let hasLandlock = SenderSandbox.kernelABI >= 1

extension WatchIntegration {
  /// Issue 9 §3: the sender runs as root; a user who can write the source swaps a directory for a
  /// symlink to a secret place while a change beneath it is queued. Nothing from outside the source
  /// may ever reach the backup.
  ///
  /// The backup's `d` is compared by type only: a daemon without chroot strips the leading `/` of
  /// an absolute symlink's target.
  @Suite("Nothing from outside the source", .serialized, .enabled(if: hasRsync))
  struct SenderConfinementTests {
    @Test(
      "the symlink swap attack, 25 times: the backup gets the symlink and old/shadow, never the outside file",
      .enabled(if: hasLandlock))
    func symlinkSwapAttack() async throws {
      let fixture = try EngineFixture()
      let secret = try OutsideSecret(in: fixture.tmp)
      let src = fixture.src
      let backup = fixture.daemon.backup
      try await fixture.start()
      #expect(fixture.engine.status().senderConfined == true)
      let rounds = 25
      for i in 0..<rounds {
        try FS.mkdir(src, "d")
        try FS.write(src, "d/shadow", "innocent \(i)\n")
        try await waitFor("round \(i): d/shadow on the backup") {
          isDirectory(backup + "/d") && read(backup + "/d/shadow") == "innocent \(i)\n"
        }
        // The attack, as in the issue: append, then at once move d away and put a symlink in its place.
        try FS.write(src, "d/shadow", "appended \(i)\n", append: true)
        try FS.rename(src + "/d", src + "/old\(i)")
        guard symlink(secret.dir, src + "/d") == 0 else { throw POSIXErrorBox(errno, "symlink") }
        try await waitFor("round \(i): the backup's d to be the symlink and the engine idle") {
          isSymlink(backup + "/d") && isIdle(fixture.engine)
        }
        #expect(try secret.copies(in: backup).isEmpty, "round \(i): the outside file reached the backup")
        if i < rounds - 1 { unlink(src + "/d") }
      }
      try await fixture.expectConverged(excludes: ["/d"])
      #expect(try secret.copies(in: backup).isEmpty)
      #expect(isSymlink(backup + "/d"))
      #expect(!secret.wasOpened(), "the outside file was opened")
      #expect(read(backup + "/old\(rounds - 1)/shadow") == "innocent \(rounds - 1)\nappended \(rounds - 1)\n")
      try await fixture.stop()
    }

    @Test(
      "swaps racing the transfers: d swapped the moment a transfer starts, 30 times, then as fast as it can",
      .enabled(if: hasLandlock))
    func swapsRacingTransfers() async throws {
      let fixture = try EngineFixture()
      let secret = try OutsideSecret(in: fixture.tmp)
      let src = fixture.src
      try await fixture.start()
      let engine = fixture.engine
      let secretDir = secret.dir
      // A large file that sorts before d in a path list keeps rsync busy between listing d/shadow
      // and opening it.
      let big = [UInt8](repeating: UInt8(ascii: "b"), count: 4 << 20)
      for k in 0..<30 {
        try await onOwnThread {
          try FS.mkdir(src, "staging\(k)")
          try FS.write(src, "staging\(k)/shadow", "round \(k)\n")
          unlink(src + "/d")
          try FS.rename(src + "/staging\(k)", src + "/d")
          try FS.write(FS.path(src, Array("a-big".utf8)), big + Array("\(k)".utf8))
          try FS.write(src, "d/shadow", "changed \(k)\n", append: true)
          // The swap as soon as a transfer runs: after the path check, while rsync lists or sends.
          let before = engine.status().transfers
          try waitForBlocking("round \(k): a transfer to start", every: .microseconds(200)) {
            let s = engine.status()
            return s.inFlight > 0 || s.transfers > before
          }
          try FS.rename(src + "/d", src + "/old\(k)")
          guard symlink(secretDir, src + "/d") == 0 else { throw POSIXErrorBox(errno, "symlink") }
        }
        try await waitFor("round \(k): the engine idle") { isIdle(engine) }
        #expect(
          try secret.copies(in: fixture.daemon.backup).isEmpty,
          "round \(k): the outside file reached the backup")
      }
      // Then toggles as fast as they go while changes flow: d a real directory with a changed
      // shadow, then d a symlink to the secret.
      try await onOwnThread {
        for k in 0..<300 {
          if k % 20 == 0 { try FS.write(FS.path(src, Array("a-big".utf8)), big + Array("fast \(k)".utf8)) }
          try FS.mkdir(src, "fast\(k)")
          try FS.write(src, "fast\(k)/shadow", "toggle \(k)\n")
          unlink(src + "/d")
          try FS.rename(src + "/fast\(k)", src + "/d")
          try FS.write(src, "d/shadow", "changed \(k)\n", append: true)
          try FS.rename(src + "/d", src + "/fast-old\(k)")
          guard symlink(secretDir, src + "/d") == 0 else { throw POSIXErrorBox(errno, "symlink") }
        }
      }
      try await fixture.expectConverged(excludes: ["/d"])
      #expect(try secret.copies(in: fixture.daemon.backup).isEmpty, "the outside file reached the backup")
      #expect(isSymlink(fixture.daemon.backup + "/d"))
      #expect(!secret.wasOpened(), "the outside file was opened")
      try await fixture.stop()
    }

    @Test(
      "the sandbox alone: rsync handed d/shadow through a symlink unchecked reads nothing outside the source",
      .enabled(if: hasLandlock))
    func sandboxAlone() async throws {
      let fixture = try EngineFixture()
      let secret = try OutsideSecret(in: fixture.tmp)
      guard symlink(secret.dir, fixture.src + "/d") == 0 else { throw POSIXErrorBox(errno, "symlink") }
      guard case .confined(let sandbox) = SenderSandbox.prepare(fixture.config) else {
        Issue.record("Landlock is here but the sender cannot be confined")
        return
      }
      let listed = [try #require(RelativePath(Array("d/shadow".utf8)))]
      // `run(list:)` skips the path check that `send` makes: only the sandbox stands in the way.
      let confined = RsyncCommand(config: fixture.config, sandbox: sandbox)
      let outcome = await confined.run(list: listed, arguments: confined.listArguments)
      #expect(outcome.errorKind == .partial, "the refused read is an error: \(outcome)")
      #expect(outcome.message?.contains("Permission denied") == true, "\(outcome)")
      #expect(
        try secret.copies(in: fixture.daemon.backup).isEmpty, "the confined sender read the outside file")
      #expect(!secret.wasOpened(), "the confined sender opened the outside file")
      // The same run unconfined does send the outside file: the attack is real.
      let unconfined = RsyncCommand(config: fixture.config)
      _ = await unconfined.run(list: listed, arguments: unconfined.listArguments)
      #expect(try secret.copies(in: fixture.daemon.backup) == ["d/shadow"])
      #expect(secret.wasOpened())
    }
  }
}

/// A 0600 file outside the source, holding a marker no other file of the test holds, and an inotify
/// watch on its directory: the kernel records every open of the file (or listing of the directory),
/// even by a transfer whose copy a later transfer replaced on the backup.
final class OutsideSecret {
  let dir: String
  let marker: String
  private let watch: Int32

  init(in tmp: TempDir) throws {
    dir = try tmp.sub("secret")
    marker = "outside-secret-\(UInt64.random(in: 1_000_000_000...9_999_999_999))"
    try FS.write(dir, "shadow", marker + "\n")
    guard chmod(dir + "/shadow", 0o600) == 0 else { throw POSIXErrorBox(errno, "chmod") }
    watch = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
    guard watch >= 0, inotify_add_watch(watch, dir, UInt32(IN_OPEN | IN_ACCESS)) >= 0 else {
      throw POSIXErrorBox(errno, "inotify")
    }
  }

  deinit { close(watch) }

  /// Whether anything opened the secret or listed its directory since the test made it.
  func wasOpened() -> Bool {
    var buffer = [UInt8](repeating: 0, count: 4096)
    return buffer.withUnsafeMutableBytes { read(watch, $0.baseAddress, $0.count) } > 0
  }

  /// The regular files under `tree` (symlinks not followed) that hold the marker, relative to `tree`.
  func copies(in tree: String) throws -> [String] {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/grep")
    // -r follows no symlink (unlike -R); -F: the marker is a fixed string.
    p.arguments = ["-r", "-l", "-F", "--", marker, "."]
    p.currentDirectoryURL = URL(fileURLWithPath: tree)
    let out = Pipe()
    p.standardOutput = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus <= 1 else { throw POSIXErrorBox(EIO, "grep exited \(p.terminationStatus)") }
    return String(decoding: data, as: UTF8.self).split(separator: "\n").map { String($0.dropFirst(2)) }
  }
}

private func read(_ path: String) -> String? {
  try? String(contentsOfFile: path, encoding: .utf8)
}

private func fileType(_ path: String) -> mode_t? {
  var st = stat()
  return lstat(path, &st) == 0 ? st.st_mode & S_IFMT : nil
}

private func isDirectory(_ path: String) -> Bool { fileType(path) == S_IFDIR }

private func isSymlink(_ path: String) -> Bool { fileType(path) == S_IFLNK }

private func isIdle(_ engine: WatchEngine) -> Bool {
  let s = engine.status()
  return s.queueDepth == 0 && s.inFlight == 0
}
