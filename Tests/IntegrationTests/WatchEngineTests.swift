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
}
