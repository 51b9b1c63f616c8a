import FleetCore
import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Owns the process-wide shared fleet: one bring-up at a time, teardown at exit.
actor SharedFleet {
  static let instance = SharedFleet()

  /// The id of the fleet this process brought up, or -1; read by the exit handler.
  static let upID = Atomic<Int>(-1)

  /// The latest bring-up (or reuse); each request waits for the one before it.
  private var latest: Task<TestFleet, any Error>?
  private var teardownRegistered = false

  func fleet(nodes wanted: Int) async throws -> TestFleet {
    let previous = latest
    if !teardownRegistered {
      teardownRegistered = true
      if ProcessInfo.processInfo.environment["FLEETSYNC_TESTFLEET_KEEP"] != "1" {
        atexit { SharedFleet.teardownAtExit() }
      }
    }
    let task = Task { () async throws -> TestFleet in
      if let current = try? await previous?.value,
        FileManager.default.fileExists(atPath: "\(current.stateDir)/fleet.json")
      {
        if current.nodes.count >= wanted { return current }
        return try await onOwnThread { try TestFleet.grow(id: current.id, nodes: wanted) }
      }
      return try await onOwnThread { try SharedFleet.bringUp(nodes: wanted) }
    }
    latest = task
    return try await task.value
  }

  /// Brings up the shared fleet on the first id not in use by another live test process.
  nonisolated static func bringUp(nodes: Int) throws -> TestFleet {
    let candidates =
      TestFleet.explicitSharedID.map { [$0] }
      ?? [TestFleet.sharedID] + TestFleet.fallbackIDs.filter { $0 != TestFleet.sharedID }
    var busy: [String] = []
    for id in candidates {
      // A fallback id is only taken when nothing of it exists (it may be a benchmark's fleet).
      if id != candidates[0], try !TestFleet.leftovers(id: id).isEmpty {
        busy.append("fleet \(id): exists")
        continue
      }
      let result = try TestFleet.runScript(id: id, ["up", String(nodes)])
      if result.status == 0 {
        upID.store(id, ordering: .sequentiallyConsistent)
        return try TestFleet.load(id: id)
      }
      // Exit status 3: in use by another live test process; try the next id.
      guard result.status == 3 else { throw TestFleet.commandError(id: id, ["up", String(nodes)], result) }
      busy.append(result.errorOutput.trimmingCharacters(in: .whitespacesAndNewlines))
    }
    throw FleetError(
      .testFleetScript,
      "no free test fleet id among \(candidates) (\(busy.joined(separator: "; "))); "
        + "wait for the other test runs or set FLEETSYNC_TESTFLEET_ID to a free id")
  }

  /// Runs `testfleet --id K down` at process exit, with posix_spawn (no Foundation at exit).
  nonisolated static func teardownAtExit() {
    let id = upID.load(ordering: .sequentiallyConsistent)
    guard id >= 0, let script = TestFleet.scriptPath else { return }
    let argv = [script, "--id", String(id), "down"]
    var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) }
    cArgs.append(nil)
    defer { cArgs.forEach { free($0) } }
    var pid: pid_t = 0
    guard posix_spawn(&pid, script, nil, nil, cArgs, environ) == 0 else { return }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
  }
}
