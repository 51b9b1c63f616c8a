import FleetTestSupport
import Foundation
import Logging
import Testing

@testable import FleetWatch

#if canImport(Glibc)
  import Glibc
#endif

/// The resident set size of this process in KiB, from /proc/self/status.
func residentKiB() -> Int {
  guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return -1 }
  for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
    return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
  }
  return -1
}

/// Opt-in measurement of the initial recursive watch on a big tree (not run in CI):
/// `FLEETWATCH_BENCH_TREE=/path/to/tree swift test --filter WatchSetupBenchmark`.
@Suite("Watch setup on a big tree (opt-in)", .dependsOnInotifyLimits)
struct WatchSetupBenchmark {
  static let tree = ProcessInfo.processInfo.environment["FLEETWATCH_BENCH_TREE"]

  @Test(.enabled(if: tree != nil))
  func watchBigTree() async throws {
    let tree = try #require(Self.tree)
    let state = "/tmp/fleetwatch-bench-state-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: state) }
    var config = WatchConfig(
      source: tree, target: RsyncTarget(user: "u", host: "127.0.0.1", port: 9, module: "m"), stateDir: state)
    config.retryInitial = .seconds(30)
    var logger = Logger(label: "bench")
    logger.logLevel = .critical
    let before = residentKiB()
    let engine = try WatchEngine(config: config, logger: logger)
    let task = Task { try await engine.run() }
    try await waitFor("the initial watch setup", within: .seconds(600)) {
      engine.status().watchSetupSeconds != nil
    }
    let s = engine.status()
    let after = residentKiB()
    print(
      "BENCH watches=\(s.watches) setupSeconds=\(s.watchSetupSeconds!) rssBeforeKiB=\(before) "
        + "rssAfterKiB=\(after) engineKiB=\(after - before)")
    #expect(s.watches > 1)
    task.cancel()
    try await task.value
  }
}
