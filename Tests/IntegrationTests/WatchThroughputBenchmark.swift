import FleetTestSupport
import FleetWatch
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Opt-in: how fast a burst of new files gets through (`FLEETWATCH_BENCH_FILES=30000 swift test
/// --filter WatchThroughputBenchmark`). Prints numbers; asserts only that the backup converged.
@Suite("Watch throughput (opt-in)", .serialized, .dependsOnInotifyLimits, .enabled(if: hasRsync))
struct WatchThroughputBenchmark {
  static let files = ProcessInfo.processInfo.environment["FLEETWATCH_BENCH_FILES"].flatMap { Int($0) }

  @Test(.enabled(if: files != nil))
  func burstOfNewFiles() async throws {
    let count = try #require(Self.files)
    let daemon = try RsyncDaemon()
    let tmp = try TempDir()
    defer { tmp.remove() }
    let src = try tmp.sub("src")
    for d in 0..<100 { try FS.mkdir(src, "d\(d)") }
    let running = try RunningEngine.start(
      makeConfig(source: src, daemon: daemon, state: try tmp.sub("state")))
    try await running.waitWatching()
    try await expectConverged(running.engine, src, daemon.backup)
    let payload = [UInt8](repeating: 0x61, count: 10_000)
    let start = Date()
    for i in 0..<count {
      var data = payload
      data[0] = UInt8(truncatingIfNeeded: i)
      try FS.write(FS.path(src, Array("d\(i % 100)/f\(i)".utf8)), data)
    }
    let written = Date().timeIntervalSince(start)
    _ = try await eventually(within: .seconds(600), every: .milliseconds(20)) {
      let s = running.engine.status()
      return s.queueDepth + s.inFlight == 0 && s.filesSent >= UInt64(count)
    }
    let total = Date().timeIntervalSince(start)
    let s = running.engine.status()
    print(
      "BENCH files=\(count) writeSeconds=\(written) replicatedSeconds=\(total) "
        + "filesPerSecond=\(Double(count) / total) transfers=\(s.transfers) filesSent=\(s.filesSent)")
    try await expectConverged(running.engine, src, daemon.backup)
    try await running.stop()
  }

  /// One batch: paths queue up while the daemon is down, then go out in one round of shards.
  @Test(.enabled(if: files != nil))
  func oneQueuedBatch() async throws {
    let count = min(try #require(Self.files), 20_000)
    let daemon = try RsyncDaemon()
    let tmp = try TempDir()
    defer { tmp.remove() }
    let src = try tmp.sub("src")
    for d in 0..<100 { try FS.mkdir(src, "d\(d)") }
    var config = makeConfig(source: src, daemon: daemon, state: try tmp.sub("state"))
    config.retryInitial = .milliseconds(200)
    config.retryMax = .milliseconds(200)
    let running = try RunningEngine.start(config)
    try await running.waitWatching()
    try await expectConverged(running.engine, src, daemon.backup)
    daemon.stop()
    let payload = [UInt8](repeating: 0x62, count: 10_000)
    for i in 0..<count { try FS.write(FS.path(src, Array("d\(i % 100)/f\(i)".utf8)), payload) }
    try await waitFor("\(count) paths queued", within: .seconds(600), every: .milliseconds(20)) {
      running.engine.status().queueDepth + running.engine.status().inFlight >= count
    }
    // Bring the daemon back: the next retry (within 0.2 s) sends the whole queue as one round.
    let transfersBefore = running.engine.status().transfers
    try daemon.start()
    let start = Date()
    try await waitFor("the queue to drain", within: .seconds(600), every: .milliseconds(5)) {
      running.engine.status().queueDepth + running.engine.status().inFlight == 0
    }
    let seconds = Date().timeIntervalSince(start)
    let rsyncRuns = running.engine.status().transfers - transfersBefore
    print(
      "BENCH queuedBatch files=\(count) seconds=\(seconds) filesPerSecond=\(Double(count) / seconds) "
        + "rsyncRuns=\(rsyncRuns)")
    try await expectConverged(running.engine, src, daemon.backup)
    try await running.stop()
  }
}
