import Testing

@testable import FleetAgent

/// A stop waits for the engine only so long: a task that never ends gives no result, one that ends
/// gives its own.
@Suite struct StopDeadlineTests {
  @Test func aTaskThatNeverEndsGivesNoResultAtTheDeadline() async {
    let stuck = Task<Void, any Error> {
      while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
    }
    defer { stuck.cancel() }
    #expect(await EngineSupervisor.result(of: stuck, within: .milliseconds(200)) == nil)
  }

  @Test func aTaskThatEndsGivesItsResult() async {
    struct Boom: Error {}
    let failing = Task<Void, any Error> { throw Boom() }
    let result = await EngineSupervisor.result(of: failing, within: .seconds(600))
    guard case .failure(let error) = result else {
      Issue.record("expected the task's failure, got \(String(describing: result))")
      return
    }
    #expect(error is Boom)
  }
}
