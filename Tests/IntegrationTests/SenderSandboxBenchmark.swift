import FleetTestSupport
import Foundation
import Testing

@testable import FleetWatch

/// Opt-in: what confining the sender costs per transfer (`FLEETWATCH_BENCH_SANDBOX_RUNS=300 swift test
/// --filter SenderSandboxBenchmark`). Single-file rsync runs to a real daemon, confined and unconfined
/// in turn (so load on the machine hits both alike); prints the numbers, asserts only that each run
/// succeeded.
@Suite("Sender sandbox cost (opt-in)", .serialized, .enabled(if: hasRsync && hasLandlock))
struct SenderSandboxBenchmark {
  static let runs = ProcessInfo.processInfo.environment["FLEETWATCH_BENCH_SANDBOX_RUNS"].flatMap { Int($0) }

  @Test(.enabled(if: runs != nil))
  func singleFileTransfers() async throws {
    let count = try #require(Self.runs)
    let fixture = try EngineFixture()
    try FS.write(fixture.src, "f", "one small file\n")
    guard case .confined(let sandbox) = SenderSandbox.prepare(fixture.config) else {
      Issue.record("the sender cannot be confined here")
      return
    }
    let list = [try #require(RelativePath(Array("f".utf8)))]
    let commands = [
      RsyncCommand(config: fixture.config), RsyncCommand(config: fixture.config, sandbox: sandbox),
    ]
    var seconds: [[Double]] = [[], []]
    for i in 0..<(2 * count) {
      let command = commands[i % 2]
      let start = ContinuousClock.now
      let outcome = await command.run(list: list, arguments: command.listArguments)
      seconds[i % 2].append((ContinuousClock.now - start).inSeconds)
      #expect(outcome.errorKind == nil, "\(outcome)")
    }
    var rulesets: [Double] = []
    for _ in 0..<count {
      let start = ContinuousClock.now
      let (fd, _) = try await sandbox.ruleset(reading: [fixture.src + "/f"])
      rulesets.append((ContinuousClock.now - start).inSeconds)
      close(fd)
    }
    for (name, values) in [("unconfined", seconds[0]), ("confined", seconds[1]), ("ruleset only", rulesets)] {
      let sorted = values.sorted()
      let mean = values.reduce(0, +) / Double(values.count)
      let p50 = sorted[sorted.count / 2]
      let p99 = sorted[min(sorted.count - 1, sorted.count * 99 / 100)]
      print(
        "sender \(name): \(values.count) runs, mean \(ms(mean)) ms, p50 \(ms(p50)) ms, p99 \(ms(p99)) ms")
    }
  }

  private func ms(_ s: Double) -> String { String(format: "%.2f", s * 1000) }
}

extension Duration {
  /// In seconds.
  fileprivate var inSeconds: Double {
    Double(components.seconds) + Double(components.attoseconds) / 1e18
  }
}
