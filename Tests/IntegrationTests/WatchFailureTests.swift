import FleetWatch
import Foundation
import Logging
import Testing

#if canImport(Glibc)
  import Glibc
#endif

extension WatchIntegration {
  @Suite("Watch engine failures and recovery", .serialized, .enabled(if: hasRsync))
  struct WatchFailureTests {
    @Test("daemon stopped for 10 s under writes: retries with backoff, catches up when it returns")
    func daemonDownUnderWrites() async throws {
      let fixture = try EngineFixture()
      let src = fixture.src
      fixture.config.retryInitial = .milliseconds(250)
      fixture.config.retryMax = .seconds(2)
      try await fixture.start()
      try await fixture.expectConverged()
      let before = fixture.engine.status()

      fixture.daemon.stop()
      var sawRetrying = false
      var sawUnreachable = false
      let end = Date().addingTimeInterval(10)
      var i = 0
      while Date() < end {
        try FS.write(src, "during-\(i % 50).txt", "write \(i)\n", append: true)
        if i % 10 == 0 { try FS.mkdir(src, "dir\(i)") }
        i += 1
        let s = fixture.engine.status()
        if s.state == .retrying && s.nextRetryAt != nil { sawRetrying = true }
        if s.lastErrorKind == .unreachable { sawUnreachable = true }
        try await Task.sleep(for: .milliseconds(50))
      }
      let down = fixture.engine.status()
      #expect(sawRetrying)
      #expect(sawUnreachable)
      #expect(down.queueDepth + down.inFlight > 0)
      #expect(down.consecutiveFailures > 0)
      // Backoff, not a busy loop: 10 s at 0.25 s..2 s per try is a few dozen attempts at most.
      let attempts = down.failedTransfers - before.failedTransfers
      #expect(attempts >= 2 && attempts < 60, "failed attempts while down: \(attempts)")

      try fixture.daemon.start()
      try await fixture.expectConverged(seconds: 120)
      let after = fixture.engine.status()
      #expect(after.consecutiveFailures == 0)
      #expect(after.state == .watching)
      #expect(after.isHealthy)
      try await fixture.stop()
    }

    @Test("cancelled with changes pending: the journal keeps them, a restart replays and catches up")
    func restartReplaysJournal() async throws {
      let fixture = try EngineFixture()
      let src = fixture.src
      try await fixture.start()
      try await fixture.expectConverged()

      fixture.daemon.stop()
      for i in 0..<30 { try FS.write(src, "pending-\(i).txt", "pending \(i)") }
      try FS.mkdir(src, "pdir/sub")
      try FS.write(src, "pdir/sub/f", "f")
      let deadline = Date().addingTimeInterval(30)
      while fixture.engine.status().queueDepth + fixture.engine.status().inFlight < 31 && Date() < deadline {
        try await Task.sleep(for: .milliseconds(50))
      }
      try await fixture.stop()
      #expect(fixture.engine.status().state == .stopping)

      let journal = fixture.state + "/" + WatchEngine.journalName
      let journaled = try FileManager.default.attributesOfItem(atPath: journal)[.size] as? Int ?? 0
      #expect(journaled > 0)

      try fixture.daemon.start()
      // Replayed when the engine is made, before it runs.
      let restarted = try WatchEngine(config: fixture.config, logger: quietLogger())
      #expect(restarted.status().queueDepth >= 31)
      let second = RunningEngine.start(restarted)
      try await second.waitWatching()
      try await expectConverged(second.engine, src, fixture.daemon.backup)
      let size = try FileManager.default.attributesOfItem(atPath: journal)[.size] as? Int ?? -1
      #expect(size == 0, "the journal is compacted once everything is replicated")
      try await second.stop()
    }

    @Test("wrong password: status says auth, names the module, unhealthy; the password is never shown")
    func authFailure() async throws {
      let fixture = try EngineFixture(daemonPassword: "the-daemon-wants-another")
      try FS.write(fixture.src, "a.txt", "a")
      try fixture.launch()
      let deadline = Date().addingTimeInterval(60)
      var s = fixture.engine.status()
      while s.lastErrorKind != .auth && Date() < deadline {
        try await Task.sleep(for: .milliseconds(100))
        s = fixture.engine.status()
      }
      #expect(s.lastErrorKind == .auth)
      #expect(s.lastError?.contains(fixture.daemon.module) == true)
      #expect(s.lastError?.contains(fixture.daemon.password) == false)
      #expect(!s.isHealthy)
      #expect(s.state == .retrying || s.state == .initialSync)
      try await fixture.stop()
    }

    @Test("unreachable daemon is reported as such")
    func unreachable() async throws {
      let tmp = try TempDir()
      defer { tmp.remove() }
      let src = try tmp.sub("src")
      var config = WatchConfig(
        source: src,
        target: RsyncTarget(user: "u", host: "127.0.0.1", port: LocalPorts.free(), module: "m"),
        stateDir: try tmp.sub("state"))
      config.connectTimeout = .seconds(2)
      let running = try RunningEngine.start(config)
      let deadline = Date().addingTimeInterval(60)
      var s = running.engine.status()
      while s.lastErrorKind == nil && Date() < deadline {
        try await Task.sleep(for: .milliseconds(100))
        s = running.engine.status()
      }
      #expect(s.lastErrorKind == .unreachable)
      #expect(s.consecutiveFailures > 0)
      try await running.stop()
    }

    @Test(
      "inotify queue overflow: a rescan and a reconciling full sync, no gap",
      .enabled(if: isRoot))
    func overflow() async throws {
      let fixture = try EngineFixture()
      let src = fixture.src
      // The limit applies to inotify instances created while it is set: set it, start, restore.
      try await withSysctl("/proc/sys/fs/inotify/max_queued_events", 16) { try await fixture.start() }
      let full = fixture.engine.status().fullSyncs

      for i in 0..<40 {
        try FS.mkdir(src, "burst\(i)/inner")
        for j in 0..<10 { try FS.write(src, "burst\(i)/inner/f\(j)", "\(i)-\(j)") }
      }
      try await fixture.expectConverged()
      let s = fixture.engine.status()
      #expect(s.overflows > 0)
      #expect(s.fullSyncs > full)
      // The new directories are watched after the rescan.
      try FS.write(src, "burst7/inner/later.txt", "later")
      try await fixture.expectConverged()
      try await fixture.stop()
    }

    @Test("a 1 GB file of real data arrives intact")
    func oneGigabyteFile() async throws {
      let fixture = try EngineFixture()
      fixture.config.ioTimeout = .seconds(60)
      try await fixture.start()
      var block = [UInt8](repeating: 0, count: 1 << 20)
      let urandom = open("/dev/urandom", O_RDONLY)
      _ = block.withUnsafeMutableBytes { read(urandom, $0.baseAddress, $0.count) }
      close(urandom)
      let fd = open(fixture.src + "/big.bin", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
      for i in 0..<1024 {
        block[0] = UInt8(truncatingIfNeeded: i)  // no two blocks alike
        block[1] = UInt8(truncatingIfNeeded: i >> 8)
        let n = block.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        #expect(n == block.count)
      }
      close(fd)
      try await fixture.expectConverged(seconds: 300)
      let size =
        try FileManager.default.attributesOfItem(atPath: fixture.daemon.backup + "/big.bin")[.size] as? Int
      #expect(size == 1 << 30)
      #expect(fixture.engine.status().bytesSent >= 1 << 30)
      try await fixture.stop()
    }

    @Test(
      "out of inotify watches: a clear error naming max_user_watches, unhealthy, periodic full syncs",
      .enabled(if: isRoot))
    func watchLimit() async throws {
      let fixture = try EngineFixture()
      let src = fixture.src
      for i in 0..<40 { try FS.mkdir(src, "d\(i)") }
      fixture.config.fullSyncInterval = .seconds(1)
      // Room for a few watches only, for as short a time as possible (the limit is per user).
      let limit = inotifyWatchesInUse() + 5
      try await withSysctl("/proc/sys/fs/inotify/max_user_watches", limit) {
        try fixture.launch()
        while fixture.engine.status().watchSetupSeconds == nil {
          try await Task.sleep(for: .milliseconds(10))
        }
      }

      let s = fixture.engine.status()
      #expect(s.lastErrorKind == .watchLimit)
      #expect(s.lastError?.contains("fs.inotify.max_user_watches is \(limit)") == true)
      #expect(s.state == .degraded)
      #expect(!s.isHealthy)
      #expect(s.watches < 40)
      // Changes in unwatched directories still arrive, through the periodic full sync.
      for i in 0..<40 { try FS.write(src, "d\(i)/file", "\(i)") }
      try await fixture.expectConverged()
      #expect(fixture.engine.status().state == .degraded)
      try await fixture.stop()
    }
  }
}

/// Sets the sysctl file `knob` (e.g. `/proc/sys/fs/inotify/max_user_watches`) to `value` while
/// `body` runs, then writes back the value it had, also when `body` throws.
func withSysctl<T>(_ knob: String, _ value: Int, _ body: () async throws -> T) async throws -> T {
  let saved = try String(contentsOfFile: knob, encoding: .utf8).trimmingCharacters(
    in: .whitespacesAndNewlines)
  try "\(value)\n".write(toFile: knob, atomically: false, encoding: .utf8)
  let result: T
  do {
    result = try await body()
  } catch {
    try? "\(saved)\n".write(toFile: knob, atomically: false, encoding: .utf8)
    throw error
  }
  try "\(saved)\n".write(toFile: knob, atomically: false, encoding: .utf8)
  return result
}

/// inotify watches currently held by all processes (they share one per-user limit as root).
func inotifyWatchesInUse() -> Int {
  var count = 0
  let fm = FileManager.default
  for pid in (try? fm.contentsOfDirectory(atPath: "/proc")) ?? [] where Int(pid) != nil {
    for fd in (try? fm.contentsOfDirectory(atPath: "/proc/\(pid)/fdinfo")) ?? [] {
      guard let text = try? String(contentsOfFile: "/proc/\(pid)/fdinfo/\(fd)", encoding: .utf8) else {
        continue
      }
      count += text.split(separator: "\n").filter { $0.hasPrefix("inotify wd:") }.count
    }
  }
  return count
}
