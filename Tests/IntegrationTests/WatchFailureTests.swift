import FleetTestSupport
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
    @Test("daemon stopped for 10 s or more under writes: retries with backoff, catches up when it returns")
    func daemonDownUnderWrites() async throws {
      let fixture = try EngineFixture()
      let src = fixture.src
      fixture.config.retryInitial = .milliseconds(250)
      fixture.config.retryMax = .seconds(2)
      try await fixture.start()
      try await fixture.expectConverged()
      let before = fixture.engine.status()

      fixture.daemon.stop()
      let stopped = ContinuousClock.now
      var sawRetrying = false
      var sawUnreachable = false
      var i = 0
      // Writes go on while the daemon is down: 10 s at least (so the backoff reaches its cap), and
      // until the engine was seen retrying after an unreachable target and backed off three times.
      try await waitFor("retries with backoff while the daemon is down", every: .milliseconds(50)) {
        try FS.write(src, "during-\(i % 50).txt", "write \(i)\n", append: true)
        if i % 10 == 0 { try FS.mkdir(src, "dir\(i)") }
        i += 1
        let s = fixture.engine.status()
        if s.state == .retrying && s.nextRetryAt != nil { sawRetrying = true }
        if s.lastErrorKind == .unreachable { sawUnreachable = true }
        return sawRetrying && sawUnreachable && s.retries - before.retries >= 3
          && ContinuousClock.now - stopped >= .seconds(10)
      }
      let down = fixture.engine.status()
      let window = ContinuousClock.now - stopped
      #expect(down.queueDepth + down.inFlight > 0)
      #expect(down.consecutiveFailures > 0)
      // Backoff, not a busy loop: however fast the machine, the window holds only so many backoff
      // steps, and each step's transfers use at most `workers` slots.
      let steps = down.retries - before.retries
      let bound = maxBackoffSteps(in: window, fixture.config)
      #expect(steps <= bound, "backoff steps in \(window): \(steps), at most \(bound)")
      let attempts = down.failedTransfers - before.failedTransfers
      let attemptBound = UInt64(fixture.config.workers) * (bound + 1)
      #expect(attempts >= 2 && attempts <= attemptBound, "failed attempts in \(window): \(attempts)")

      try fixture.daemon.start()
      try await fixture.expectConverged()
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
      try await waitFor("31 paths accepted", every: .milliseconds(50)) {
        let s = fixture.engine.status()
        return s.queueDepth + s.inFlight >= 31
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
      var size = -1
      let compacted = try await eventually {
        size = try FileManager.default.attributesOfItem(atPath: journal)[.size] as? Int ?? -1
        return size == 0
      }
      #expect(compacted, "the journal is compacted once everything is replicated: \(size) bytes")
      try await second.stop()
    }

    @Test("wrong password: status says auth, names the module, unhealthy; the password is never shown")
    func authFailure() async throws {
      let fixture = try EngineFixture(daemonPassword: "the-daemon-wants-another")
      try FS.write(fixture.src, "a.txt", "a")
      try fixture.launch()
      var s = fixture.engine.status()
      _ = try await eventually {
        s = fixture.engine.status()
        return s.lastErrorKind == .auth
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
      var s = running.engine.status()
      _ = try await eventually {
        s = running.engine.status()
        return s.lastErrorKind != nil
      }
      #expect(s.lastErrorKind == .unreachable)
      #expect(s.consecutiveFailures > 0)
      try await running.stop()
    }

    @Test(
      "inotify queue overflow: a rescan and a reconciling full sync, no gap",
      .changesInotifyLimits, .enabled(if: isRoot))
    func overflow() async throws {
      let fixture = try EngineFixture()
      fixture.config.backend = .inotify  // fanotify's overflow: FanotifyBackendTests
      let src = fixture.src
      try await fixture.overflowAndReconcile(.maxQueuedEvents)
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
      try await fixture.expectConverged(deadline: .seconds(300))
      let size =
        try FileManager.default.attributesOfItem(atPath: fixture.daemon.backup + "/big.bin")[.size] as? Int
      #expect(size == 1 << 30)
      #expect(fixture.engine.status().bytesSent >= 1 << 30)
      try await fixture.stop()
    }

    @Test(
      "out of inotify watches: a clear error naming max_user_watches, unhealthy, periodic full syncs",
      .changesInotifyLimits, .enabled(if: isRoot))
    func watchLimit() async throws {
      let fixture = try EngineFixture()
      fixture.config.backend = .inotify  // fanotify has no watches to run out of
      let src = fixture.src
      for i in 0..<40 { try FS.mkdir(src, "d\(i)") }
      fixture.config.fullSyncInterval = .seconds(1)
      // Room for a few watches only, for as short a time as possible (the limit is per user).
      let limit = InotifyLimits.watchesInUseByThisUser() + 5
      try await InotifyLimits.with(.maxUserWatches, limit) {
        try fixture.launch()
        try await waitFor("the engine's watches", every: .milliseconds(10)) {
          fixture.engine.status().watchSetupSeconds != nil
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

/// The most backoff steps (``WatchStatus/retries``) an engine with `config` can take within
/// `window`: step k + 1 comes at least half the k-th nominal delay after step k (capped exponential
/// backoff, half of each delay fixed, half random).
func maxBackoffSteps(in window: Duration, _ config: WatchConfig) -> UInt64 {
  let cap = max(config.retryMax, config.retryInitial)
  var steps: UInt64 = 1
  var elapsed = Duration.zero
  var nominal = config.retryInitial
  while true {
    elapsed += min(nominal, cap) / 2
    if elapsed > window { return steps }
    steps += 1
    nominal = min(nominal * 2, cap)
  }
}
