#if canImport(Glibc)
  import Glibc
#endif
import FleetWatch
import Foundation
import Testing

@Suite("Watch engine against a real rsync daemon", .serialized, .enabled(if: hasRsync))
struct WatchEngineTests {
  @Test("create, modify, append, truncate, chmod, delete files and directories")
  func basicChanges() async throws {
    let daemon = try RsyncDaemon()
    let tmp = try TempDir()
    defer { tmp.remove() }
    let src = try tmp.sub("src")
    try FS.write(src, "existing.txt", "was there before start\n")
    try FS.mkdir(src, "old/dir")
    try FS.write(src, "old/dir/f", "old")
    let running = try RunningEngine.start(makeConfig(source: src, daemon: daemon, state: try tmp.sub("state")))
    try await running.waitWatching()
    try await expectConverged(running.engine, src, daemon.backup)

    try FS.write(src, "new.txt", "hello\n")
    try FS.write(src, "existing.txt", "modified\n")
    try FS.write(src, "new.txt", "more\n", append: true)
    try FS.write(src, "trunc.txt", String(repeating: "x", count: 10000))
    truncate(src + "/trunc.txt", 10)
    chmod(src + "/existing.txt", 0o600)
    try FS.mkdir(src, "d1/d2")
    try FS.write(src, "d1/d2/inner", "inner")
    chmod(src + "/d1", 0o750)
    try FileManager.default.removeItem(atPath: src + "/old")
    try await expectConverged(running.engine, src, daemon.backup)

    unlink(src + "/new.txt")
    try FileManager.default.removeItem(atPath: src + "/d1")
    symlink("existing.txt", src + "/link")
    try await expectConverged(running.engine, src, daemon.backup)
    let s = running.engine.status()
    #expect(s.transfers > 0)
    #expect(s.filesSent > 0)
    #expect(s.isHealthy)
    try await running.stop()
  }

  @Test("renames of files and directories: inside the tree, into it, out of it")
  func renames() async throws {
    let daemon = try RsyncDaemon()
    let tmp = try TempDir()
    defer { tmp.remove() }
    let src = try tmp.sub("src")
    let outside = try tmp.sub("outside")
    try FS.mkdir(src, "a/b/c")
    try FS.write(src, "a/b/c/deep.txt", "deep")
    try FS.write(src, "a/file.txt", "file")
    try FS.mkdir(src, "leaving/sub")
    try FS.write(src, "leaving/sub/x", "x")
    let running = try RunningEngine.start(makeConfig(source: src, daemon: daemon, state: try tmp.sub("state")))
    try await running.waitWatching()
    try await expectConverged(running.engine, src, daemon.backup)

    // Inside the tree: a file, then a directory with content.
    try FS.rename(src + "/a/file.txt", src + "/a/renamed.txt")
    try FS.rename(src + "/a/b", src + "/moved-b")
    // Into the tree: a directory built elsewhere, with nested content.
    try FS.mkdir(outside, "incoming/x/y")
    try FS.write(outside, "incoming/x/y/z.txt", "came from outside")
    try FS.write(outside, "incoming/top.txt", "top")
    try FS.write(outside, "single.txt", "single")
    try FS.rename(outside + "/incoming", src + "/incoming")
    try FS.rename(outside + "/single.txt", src + "/single.txt")
    // Out of the tree.
    try FS.rename(src + "/leaving", outside + "/left")
    try await expectConverged(running.engine, src, daemon.backup)

    // The moved directories are still watched at their new place.
    try FS.write(src, "moved-b/c/after-move.txt", "after")
    try FS.write(src, "incoming/x/y/second.txt", "second")
    // The directory moved out is no longer replicated.
    try FS.write(outside, "left/sub/ignored.txt", "ignored")
    try await expectConverged(running.engine, src, daemon.backup)
    #expect(!FileManager.default.fileExists(atPath: daemon.backup + "/left"))
    // Swap two directories back and forth quickly.
    try FS.rename(src + "/moved-b", src + "/tmp-name")
    try FS.rename(src + "/incoming", src + "/moved-b")
    try FS.rename(src + "/tmp-name", src + "/incoming")
    try FS.write(src, "incoming/c/after-swap.txt", "swap")
    try await expectConverged(running.engine, src, daemon.backup)
    try await running.stop()
  }

  @Test("names with spaces, quotes, newlines, non-UTF-8 bytes and leading dashes")
  func awkwardNames() async throws {
    let daemon = try RsyncDaemon()
    let tmp = try TempDir()
    defer { tmp.remove() }
    let src = try tmp.sub("src")
    let running = try RunningEngine.start(makeConfig(source: src, daemon: daemon, state: try tmp.sub("state")))
    try await running.waitWatching()
    let names: [[UInt8]] = [
      Array("with space.txt".utf8),
      Array("quote's \"double\".txt".utf8),
      Array("new\nline".utf8),
      Array("-leading-dash".utf8),
      Array("--delete".utf8),
      [0x6C, 0x61, 0x74, 0x69, 0x6E, 0xE9, 0xFF, 0x2E, 0x74],  // "latin\xE9\xFF.t": not UTF-8
      Array("$(touch pwned)`id`;|&".utf8),
      Array("*?[glob]".utf8),
    ]
    for n in names {
      try FS.write(FS.path(src, n), Array("content of a file".utf8))
    }
    // The same names as directories with a file inside.
    for n in names {
      let dir = FS.path(src, [UInt8(ascii: "d")] + n)
      guard Glibc.mkdir(FS.cPath(dir), 0o755) == 0 else { throw POSIXErrorBox(errno) }
      try FS.write(dir + Array("/inner".utf8), Array("inner".utf8))
    }
    try await expectConverged(running.engine, src, daemon.backup)
    // Delete half of them again.
    for n in names.prefix(4) { unlink(FS.cPath(FS.path(src, n))) }
    try await expectConverged(running.engine, src, daemon.backup)
    #expect(!FileManager.default.fileExists(atPath: tmp.path + "/pwned"))
    #expect(!FileManager.default.fileExists(atPath: "pwned"))
    try await running.stop()
  }

  @Test("a deep tree created fast: directories get files before their watch exists")
  func deepTreeCreatedFast() async throws {
    let daemon = try RsyncDaemon()
    let tmp = try TempDir()
    defer { tmp.remove() }
    let src = try tmp.sub("src")
    let running = try RunningEngine.start(makeConfig(source: src, daemon: daemon, state: try tmp.sub("state")))
    try await running.waitWatching()
    for i in 0..<20 {
      let rel = "t\(i)/a/b/c/d/e/f/g"
      try FS.mkdir(src, rel)
      var dir = "t\(i)"
      for part in ["", "/a", "/b", "/c", "/d", "/e", "/f", "/g"] {
        dir += part
        try FS.write(src, dir + "/file\(i).txt", "level \(dir)")
      }
    }
    try await expectConverged(running.engine, src, daemon.backup)
    try await running.stop()
  }
}
