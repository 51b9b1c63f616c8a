import FleetCore
import Synchronization
import Testing

@testable import FleetTestSupport

/// The order that keeps tests which change a shared resource away from tests that use it (see
/// ``SharedResource``).
@Suite("Shared test resources: shared and exclusive use", .timeLimit(.minutes(5)))
struct SharedResourceTests {
  @Test("an exclusive request waits for the shared holder; a later shared one waits behind it")
  func exclusiveWaitsAndIsNotOvertaken() async throws {
    let lock = SharedExclusiveLock()
    let log = EventLog()
    await lock.lock(.shared)
    let exclusive = Task {
      await lock.lock(.exclusive)
      log.append("exclusive")
      await lock.unlock(.exclusive)
    }
    try await waitFor("the exclusive request to queue") { await lock.queued == 1 }
    let shared = Task {
      await lock.lock(.shared)
      log.append("second shared")
      await lock.unlock(.shared)
    }
    try await waitFor("the second shared request to queue") { await lock.queued == 2 }
    log.append("first shared released")
    await lock.unlock(.shared)
    await exclusive.value
    await shared.value
    #expect(log.entries == ["first shared released", "exclusive", "second shared"])
    #expect(await lock.queued == 0)
  }

  @Test("shared requests do not wait for each other")
  func sharedHoldersOverlap() async {
    let lock = SharedExclusiveLock()
    await lock.lock(.shared)
    await lock.lock(.shared)
    #expect(await lock.queued == 0)
    await lock.unlock(.shared)
    await lock.unlock(.shared)
  }

  @Test(
    "a test that depends on the limits holds them shared and may not change them", .dependsOnInotifyLimits)
  func dependingTestCannotChange() async throws {
    #expect(SharedResourceTrait.held == [.inotifyLimits: false])
    let error = await #expect(throws: FleetError.self) {
      try await InotifyLimits.with(.maxQueuedEvents, 16) {}
    }
    #expect(error?.message.contains(".changesInotifyLimits") == true)
  }

  @Test(
    "a test that only uses the shared fleet may not disturb it", .usesSharedFleet,
    .enabled(if: TestFleet.isSupported))
  func usingTestCannotDisturbTheSharedFleet() async throws {
    let fleet = try await TestFleet.shared(nodes: 1)
    let error = #expect(throws: FleetError.self) { try fleet.cut(fleet.node(1)) }
    #expect(error?.message.contains(".disturbsSharedFleet") == true)
  }

  /// In a suite that depends on the limits, a test that changes them holds them alone (the suite's
  /// shared hold steps aside instead of deadlocking it).
  @Suite(.dependsOnInotifyLimits)
  struct InADependingSuite {
    @Test(.changesInotifyLimits)
    func changingTestHoldsThemAlone() {
      #expect(SharedResourceTrait.held == [.inotifyLimits: true])
    }

    @Test func otherTestsHoldThemShared() {
      #expect(SharedResourceTrait.held == [.inotifyLimits: false])
    }
  }
}

/// What happened, in order, across tasks.
final class EventLog: Sendable {
  private let box = Mutex<[String]>([])
  func append(_ entry: String) { box.withLock { $0.append(entry) } }
  var entries: [String] { box.withLock { $0 } }
}
