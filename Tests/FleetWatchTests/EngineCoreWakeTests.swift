import FleetCore
import Foundation
import Synchronization
import Testing

@testable import FleetWatch

/// When an accepted change wakes the transfer loop: always for the first pending change, and for
/// later ones only while the loop has not said it will look again anyway.
@Suite struct EngineCoreWakeTests {
  private func core() -> EngineCore {
    let config = WatchConfig(
      source: "/nonexistent-source", target: RsyncTarget(user: nil, host: "h", port: nil, module: "m"),
      stateDir: "/nonexistent-state")
    return EngineCore(config: config, logger: LogRecorder().logger, journal: nil, replayed: [])
  }

  private func path(_ name: String) -> SyncPath {
    .entry(RelativePath(Array(name.utf8))!)
  }

  /// Whether a wake is waiting; ends the stream, so it is the last look at `core`.
  private func woken(_ core: EngineCore, _ wakes: inout AsyncStream<Void>.Iterator) async -> Bool {
    core.wake.finish()
    return await wakes.next() != nil
  }

  @Test func aFirstPendingChangeWakesTheLoop() async {
    let core = core()
    var wakes = core.wakeStream.makeAsyncIterator()
    core.pendingChangesWake.store(false, ordering: .releasing)
    core.accept([path("a")])
    #expect(await woken(core, &wakes))
  }

  @Test func moreChangesDoNotWakeALoopThatLooksAgainAnyway() async {
    let core = core()
    var wakes = core.wakeStream.makeAsyncIterator()
    core.accept([path("a")])
    _ = await wakes.next()
    core.pendingChangesWake.store(false, ordering: .releasing)
    core.accept([path("b"), path("c")])
    #expect(!(await woken(core, &wakes)))
    #expect(core.snapshot().queueDepth == 3)
  }

  @Test func moreChangesWakeALoopThatWaitsForThem() async {
    let core = core()
    var wakes = core.wakeStream.makeAsyncIterator()
    core.accept([path("a")])
    _ = await wakes.next()
    core.accept([path("b")])
    #expect(await woken(core, &wakes))
  }
}
